"""The process an internal plugin runs in: builds ``aigis``, then calls launch(log).

The agent starts ``python3 -u shim.py`` with ``loader.py`` beside it and
these environment variables:

- ``AIGIS_PLUGIN``: the plugin's name.
- ``AIGIS_LAUNCH_MODULE``: the module that defines ``launch`` (the
  original's ``LAUNCH = "main"``), imported with ENTRYPOINT on ``sys.path``;
  or ``AIGIS_LAUNCH``: the Python file that defines it (the spec's form).
  ``launch(log)`` is called when it takes a positional parameter, else
  ``launch()``.
- ``AIGIS_ENTRYPOINT``: the working directory, also put on ``sys.path``.
- ``AIGIS_CORE_PLUGINS``: JSON list of ``{"name", "entrypoint", "core_file"}``,
  the core plugins in load order. They are loaded here, in this process: the
  copy of the core the spec describes, so skill calls never leave it.
- ``AIGIS_MODE``: ``copy`` (the copied core) or ``proxy`` (``import aigis``
  gives the AigisProxy of ``proxy.py``: every call goes to the live core in
  central; no core plugin is loaded here).
- ``AIGIS_CONTROL_FD`` (optional): a socket to the agent. Frames are a
  4-byte big-endian length and a payload: a UTF-8 JSON object for control
  calls such as ``aigis.AIGISReload`` (``{"id", "op", "plugin"}`` out,
  ``{"id", "ok", "result"|"error"}`` back), or a proxy call/reply frame
  (see ``proxy.py``), at most ``proxy.MAX_PAYLOAD`` bytes. Many threads
  may call at once; whichever waits reads the socket (``proxy.Link``).
- ``AIGIS_CALLS_FD`` and ``AIGIS_CALL_TOKEN`` (optional, proxy mode on a LAN
  host): a listening socket on which central's direct call channel
  arrives, and the token it sends first (``proxy.DirectCalls``).

Log records and anything printed go to stdout/stderr, which the agent relays
line by line to the central log. Exit codes: 0 launch returned, 1 launch
raised, 2 no usable launch function, 3 Python too old.
"""

import sys

if sys.version_info < (3, 8):
    sys.stderr.write(
        "AIGIS internal plugins need Python 3.8 or newer; this is %s\n" % sys.version.split()[0])
    sys.exit(3)

import importlib  # noqa: E402
import importlib.machinery  # noqa: E402
import importlib.util  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import os  # noqa: E402
import socket  # noqa: E402
import types  # noqa: E402
from typing import Any, Optional  # noqa: E402

# Python put this file's directory first on sys.path; it holds our files,
# not the plugin's.
_HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _HERE]


def _private_module(name: str, file: str) -> types.ModuleType:
    """Loads one of our files under a name no plugin uses: the shim's own
    directory never goes on sys.path, so a plugin's `proxy` or `loader`
    module is its own."""
    module = sys.modules.get(name)
    if module is not None:  # registered by an embedding host
        return module
    path = os.path.join(_HERE, file)
    loader = importlib.machinery.SourceFileLoader(name, path)
    spec = importlib.util.spec_from_loader(name, loader)
    assert spec is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


aigis_loader = _private_module("aigis_loader", "loader.py")
proxy = _private_module("aigis_proxy", "proxy.py")


def _stderr_handler(fmt: str) -> logging.Handler:
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter(fmt))
    return h


class ControlLink:
    """The plugin's end of the agent's control socket (see the module doc)."""

    def __init__(self, fd: Optional[int]) -> None:
        self.link: Optional[proxy.Link] = None
        if fd is None:
            return
        self._frames = proxy.FrameSocket(socket.socket(fileno=fd))
        self.link = proxy.Link(self._frames.send, self._frames.next, self._frames.recycle)

    def call(self, op: str, **args: Any) -> Any:
        """A JSON control call (e.g. reload), answered by central itself."""
        if self.link is None:
            raise RuntimeError("no link to central (AIGIS_CONTROL_FD is not set)")
        call_id = self.link.next_id()
        request = json.dumps(dict(args, id=call_id, op=op)).encode()
        reply = json.loads(self.link.request(call_id, request).decode())
        if reply.get("ok"):
            return reply.get("result")
        raise RuntimeError("central refused %s: %s" % (op, reply.get("error", "unknown error")))


def build_core(plugin: str, control: ControlLink) -> types.ModuleType:
    root = types.ModuleType("aigis")
    sys.modules["aigis"] = root

    def AIGISReload(name: str) -> Any:
        """Asks central to reload plugin `name`."""
        return control.call("reload", plugin=str(name))

    root.AIGISReload = AIGISReload
    core = aigis_loader.Core(
        root,
        lambda name: aigis_loader.plugin_logger(
            name, _stderr_handler("%(levelname)s [core " + name + "] %(message)s")))
    log = aigis_loader.plugin_logger("shim." + plugin, _stderr_handler("%(levelname)s %(message)s"))
    for spec in json.loads(os.environ.get("AIGIS_CORE_PLUGINS") or "[]"):
        try:
            core.load(spec["name"], spec["entrypoint"], spec["core_file"])
        except aigis_loader.SkillError as e:
            log.error("core plugin %s is not available here: %s", spec.get("name"), e)
    return root


def import_launch(plugin: str, module_name: str, launch_file: str) -> types.ModuleType:
    """The module that defines ``launch``: by name, or from its file (any
    file name; it need not end in ``.py``)."""
    if module_name:
        return importlib.import_module(module_name)
    name = "aigis_launch_" + plugin.replace("-", "_")
    loader = importlib.machinery.SourceFileLoader(name, launch_file)
    spec = importlib.util.spec_from_loader(name, loader)
    if spec is None:
        raise ImportError("cannot load %s" % launch_file)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    loader.exec_module(module)
    return module


#: A function's code flag for ``*args`` (``inspect.CO_VARARGS``).
_CO_VARARGS = 0x04


def takes_log(launch: Any) -> bool:
    """``launch(log)`` (the spec) or ``launch()`` (the original's plugins)."""
    if (isinstance(launch, types.FunctionType) and not hasattr(launch, "__wrapped__")
            and not hasattr(launch, "__signature__")):
        # What inspect.signature would say, without importing it (10 ms).
        code = launch.__code__
        return code.co_argcount > 0 or bool(code.co_flags & _CO_VARARGS)
    import inspect
    try:
        params = inspect.signature(launch).parameters.values()
    except (TypeError, ValueError):
        return True
    return any(p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.VAR_POSITIONAL)
               for p in params)


def log_exception(log: logging.Logger, message: str, *args: Any) -> None:
    """``log.exception``, with the core's traceback of a proxied exception
    also before Python 3.11 (which shows it as a PEP 678 note itself)."""
    log.exception(message, *args)
    err = sys.exc_info()[1]
    remote = getattr(err, "remote_traceback", "")
    if remote and sys.version_info < (3, 11):
        log.error("Traceback in the AIGIS core:\n%s", remote.rstrip())


def main() -> int:
    plugin = os.environ.get("AIGIS_PLUGIN", "plugin")
    module_name = os.environ.get("AIGIS_LAUNCH_MODULE", "")
    launch_file = os.environ.get("AIGIS_LAUNCH", "")
    what = ("LAUNCH module %s" % module_name) if module_name else ("LAUNCH file %s" % launch_file)
    entrypoint = os.environ.get("AIGIS_ENTRYPOINT") or os.getcwd()
    fd = os.environ.get("AIGIS_CONTROL_FD")
    control = ControlLink(int(fd) if fd else None)
    if os.environ.get("AIGIS_MODE") == "proxy":
        if control.link is None:
            sys.stderr.write("proxied internal plugins need AIGIS_CONTROL_FD (a link to central)\n")
            return 2

        def AIGISReload(name: str) -> Any:
            """Asks central to reload plugin `name`."""
            return control.call("reload", plugin=str(name))

        calls: Any = control.link
        listener, token = os.environ.get("AIGIS_CALLS_FD"), os.environ.get("AIGIS_CALL_TOKEN")
        if listener and token:
            calls = proxy.DirectCalls(socket.socket(fileno=int(listener)), token, control.link)
        sys.modules["aigis"] = proxy.AigisProxy(calls, AIGISReload)
    else:
        build_core(plugin, control)

    log = aigis_loader.plugin_logger(plugin, _stderr_handler("%(levelname)s %(message)s"))
    paths = [entrypoint] + ([os.path.dirname(os.path.abspath(launch_file))] if launch_file else [])
    for path in reversed(paths):
        if path in sys.path:
            sys.path.remove(path)
        sys.path.insert(0, path)
    try:
        module = import_launch(plugin, module_name, launch_file)
    except FileNotFoundError:
        sys.stderr.write("%s does not exist\n" % what)
        return 2
    except Exception:  # noqa: BLE001 - reported with its traceback
        log_exception(log, "importing %s failed", what)
        return 1
    launch = getattr(module, "launch", None)
    if not callable(launch):
        sys.stderr.write("%s defines no launch() function\n" % what)
        return 2
    try:
        if takes_log(launch):
            launch(log)
        else:
            launch()
    except KeyboardInterrupt:
        return 1
    except Exception:  # noqa: BLE001 - reported with its traceback
        log_exception(log, "launch() raised")
        return 1
    return 0


if __name__ == "__main__":
    code = main()
    sys.stdout.flush()
    sys.stderr.flush()
    sys.exit(code)
