"""Glue between central's embedded interpreter and the SKILLS loader.

Central (Rust) calls ``start`` once with two callables it implements:
``emit(plugin, levelno, text)`` puts a log record into the central log, and
``control(op, plugin)`` asks the daemon to act (``reload``). Everything else
is the shared loader, so the real core and the copied core cannot drift.
"""

from __future__ import annotations

import logging
import sys
import types
from typing import Any, Callable

import aigis_loader


class CentralHandler(logging.Handler):
    """Sends a plugin's log records to the central log."""

    def __init__(self, plugin: str, emit: Callable[[str, int, str], None]) -> None:
        super().__init__(logging.DEBUG)
        self._plugin = plugin
        self._emit = emit
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = self.format(record)
        except Exception:  # noqa: BLE001 - a bad record must not kill a skill
            text = str(record.msg)
        self._emit(self._plugin, record.levelno, text)


def start(emit: Callable[[str, int, str], None],
          control: Callable[[str, str], Any]) -> aigis_loader.Core:
    """Creates the ``aigis`` module in sys.modules and returns its Core."""
    root = types.ModuleType("aigis")
    root.__doc__ = "The AIGIS core: skills exposed by core plugins."
    sys.modules["aigis"] = root

    def AIGISReload(name: str) -> bool:
        """Schedules a reload of plugin `name`; returns True once scheduled."""
        return bool(control("reload", str(name)))

    root.AIGISReload = AIGISReload
    return aigis_loader.Core(
        root, lambda plugin: aigis_loader.plugin_logger(plugin, CentralHandler(plugin, emit)))
