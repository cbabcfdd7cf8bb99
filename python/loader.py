"""The SKILLS loader: turns core plugins into the ``aigis`` namespace.

One piece of code serves both places the core lives: central's embedded
interpreter (the real core) and an internal-local plugin's own process (the
copied core). It is stdlib-only and is embedded into the binaries as text,
so it imports nothing of ours.

For each core plugin the loader imports ``AIGIS/AIGIS.core``, reads
``SKILLS`` (dotted names into that module) and exposes each at the same
dotted path under the root namespace, merging intermediate namespaces across
plugins. Validation is complete before anything is inserted, so a plugin
that fails exposes nothing. Callables that take a ``logger`` keyword (or
``**kwargs``) are wrapped to receive the plugin's logger; that is decided
once, from the signature, at load time.
"""

from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import inspect
import logging
import sys
import traceback
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

__all__ = ["Core", "SkillError", "plugin_logger"]


class SkillError(Exception):
    """A core plugin could not be loaded; the message is for the operator."""


def plugin_logger(plugin: str, handler: logging.Handler) -> logging.Logger:
    """The logger of one plugin: records go to ``handler`` only."""
    logger = logging.getLogger("aigis.plugin." + plugin)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    for old in list(logger.handlers):
        logger.removeHandler(old)
    logger.addHandler(handler)
    return logger


def _wants_logger(obj: Any) -> bool:
    """True when calling ``obj(logger=...)`` is accepted by its signature."""
    if not callable(obj) or isinstance(obj, type):
        return False
    try:
        params = inspect.signature(obj).parameters.values()
    except (TypeError, ValueError):
        return False
    for p in params:
        if p.kind is inspect.Parameter.VAR_KEYWORD:
            return True
        if p.name == "logger" and p.kind in (
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
            inspect.Parameter.KEYWORD_ONLY,
        ):
            return True
    return False


def _with_logger(func: Callable[..., Any], logger: logging.Logger) -> Callable[..., Any]:
    """``func`` with ``logger=`` bound; a caller's own ``logger=`` still wins.

    ``functools.partial`` does the keyword merge in C, which keeps the
    per-call overhead of the wrapper small (see bench/skill_call.py).
    """
    skill = functools.partial(func, logger=logger)
    functools.update_wrapper(skill, func)
    return skill


class _Plugin:
    def __init__(self, name: str, entrypoint: str, core_file: str,
                 module: types.ModuleType, names: List[str]) -> None:
        self.name = name
        self.entrypoint = entrypoint
        self.core_file = core_file
        self.module = module
        self.names = names


class Core:
    """Owns the root namespace and remembers which plugin exposed what."""

    def __init__(self, root: types.ModuleType,
                 make_logger: Callable[[str], logging.Logger]) -> None:
        self.root = root
        self._make_logger = make_logger
        self._plugins: Dict[str, _Plugin] = {}
        self._owner: Dict[str, str] = {}  # dotted name -> plugin

    # -- queries ---------------------------------------------------------
    def plugins(self) -> List[str]:
        return list(self._plugins)

    def skills(self, plugin: str) -> List[str]:
        p = self._plugins.get(plugin)
        return list(p.names) if p else []

    # -- loading ---------------------------------------------------------
    def load(self, plugin: str, entrypoint: str, core_file: str) -> List[str]:
        """Imports ``core_file`` and exposes its SKILLS; returns their names."""
        if plugin in self._plugins:
            raise SkillError(f"core plugin `{plugin}` is already loaded")
        module = self._import(plugin, entrypoint, core_file)
        logger = self._make_logger(plugin)
        resolved = self._resolve(plugin, module, core_file)
        for name, _ in resolved:
            self._check_free(plugin, name)
        for name, value in resolved:
            if _wants_logger(value):
                value = _with_logger(value, logger)
            self._insert(name, value)
            self._owner[name] = plugin
        names = [n for n, _ in resolved]
        self._plugins[plugin] = _Plugin(plugin, entrypoint, core_file, module, names)
        return names

    def _import(self, plugin: str, entrypoint: str, core_file: str) -> types.ModuleType:
        if entrypoint not in sys.path:
            sys.path.insert(0, entrypoint)
        modname = "aigis_core_" + plugin.replace("-", "_")
        try:
            loader = importlib.machinery.SourceFileLoader(modname, core_file)
            spec = importlib.util.spec_from_loader(modname, loader)
            if spec is None:
                raise ImportError(f"cannot make a module spec for {core_file}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[modname] = module
            loader.exec_module(module)
        except BaseException as e:  # noqa: BLE001 - any failure is the plugin's
            sys.modules.pop(modname, None)
            if isinstance(e, KeyboardInterrupt):
                raise
            raise SkillError(
                f"core plugin `{plugin}`: importing {core_file} failed:\n"
                + "".join(traceback.format_exception(type(e), e, e.__traceback__))
            ) from None
        return module

    def _resolve(self, plugin: str, module: types.ModuleType,
                 core_file: str) -> List[Tuple[str, Any]]:
        skills = getattr(module, "SKILLS", None)
        if skills is None:
            raise SkillError(f"core plugin `{plugin}`: {core_file} defines no SKILLS list")
        if not isinstance(skills, (list, tuple)):
            raise SkillError(
                f"core plugin `{plugin}`: SKILLS in {core_file} must be a list of "
                f"dotted names, not {type(skills).__name__}")
        out: List[Tuple[str, Any]] = []
        seen = set()
        for name in skills:
            if not isinstance(name, str) or not name or not all(
                    part.isidentifier() for part in name.split(".")):
                raise SkillError(
                    f"core plugin `{plugin}`: SKILLS entry {name!r} in {core_file} "
                    "is not a dotted name like 'module.function'")
            if name in seen:
                raise SkillError(f"core plugin `{plugin}`: SKILLS lists {name!r} twice")
            seen.add(name)
            value: Any = module
            for i, part in enumerate(name.split(".")):
                try:
                    value = getattr(value, part)
                except AttributeError:
                    where = ".".join(name.split(".")[:i]) or "AIGIS.core"
                    raise SkillError(
                        f"core plugin `{plugin}`: SKILLS entry {name!r} does not resolve: "
                        f"{where} has no attribute {part!r}") from None
            out.append((name, value))
        for a in seen:
            for b in seen:
                if b.startswith(a + "."):
                    raise SkillError(
                        f"core plugin `{plugin}`: SKILLS entries {a!r} and {b!r} overlap")
        return out

    def _check_free(self, plugin: str, name: str) -> None:
        owner = self._owner.get(name)
        if owner is None:
            for taken, other in self._owner.items():
                if taken.startswith(name + ".") or name.startswith(taken + "."):
                    owner, name = other, f"{name} (overlapping {taken})"
                    break
        if owner is None and "." not in name and hasattr(self.root, name):
            owner = "aigis itself"
        if owner is not None:
            raise SkillError(
                f"core plugin `{plugin}`: skill `aigis.{name}` is already exposed by "
                f"`{owner}`; a later plugin cannot replace it")

    def _insert(self, name: str, value: Any) -> None:
        parts = name.split(".")
        ns = self.root
        for i, part in enumerate(parts[:-1]):
            child = getattr(ns, part, None)
            if not isinstance(child, types.ModuleType):
                child = types.ModuleType(f"{self.root.__name__}.{'.'.join(parts[:i + 1])}")
                setattr(ns, part, child)
            ns = child
        setattr(ns, parts[-1], value)

    # -- unloading -------------------------------------------------------
    def cleanup(self, plugin: str) -> None:
        """Runs the plugin's ``cleanup()``; failures are logged, not raised."""
        p = self._plugins.get(plugin)
        fn = getattr(p.module, "cleanup", None) if p else None
        if callable(fn):
            try:
                fn()
            except Exception:  # noqa: BLE001 - reported on the plugin's logger
                self._make_logger(plugin).exception("cleanup() failed")

    def unload(self, plugin: str) -> None:
        p = self._plugins.get(plugin)
        if p is None:
            return
        self.cleanup(plugin)
        for name in p.names:
            self._remove(name)
            self._owner.pop(name, None)
        sys.modules.pop(p.module.__name__, None)
        del self._plugins[plugin]

    def reload(self, plugin: str) -> List[str]:
        p = self._plugins.get(plugin)
        if p is None:
            raise SkillError(f"core plugin `{plugin}` is not loaded")
        self.unload(plugin)
        return self.load(plugin, p.entrypoint, p.core_file)

    def _remove(self, name: str) -> None:
        parts = name.split(".")
        chain = [self.root]
        for part in parts[:-1]:
            nxt = getattr(chain[-1], part, None)
            if not isinstance(nxt, types.ModuleType):
                return
            chain.append(nxt)
        if hasattr(chain[-1], parts[-1]):
            delattr(chain[-1], parts[-1])
        # Drop intermediate namespaces that became empty.
        for i in range(len(parts) - 2, -1, -1):
            ns = chain[i + 1]
            if any(not k.startswith("__") for k in vars(ns)):
                break
            delattr(chain[i], parts[i])

    def shutdown(self) -> None:
        """Unloads every plugin, last loaded first (cleanup in reverse order)."""
        for plugin in reversed(list(self._plugins)):
            self.unload(plugin)


def describe(exc: Optional[BaseException] = None) -> str:
    """The traceback text of ``exc`` (or of the exception being handled)."""
    if exc is None:
        return traceback.format_exc()
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
