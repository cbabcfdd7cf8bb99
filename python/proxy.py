"""The AigisProxy: calls from internal-remote plugins to the real core.

Both ends live here so the wire format is written once:

- the plugin side (``AigisProxy``, used by ``shim.py`` in proxy mode): any
  attribute path is a proxy; calling it sends ``(path, args, kwargs)``;
- the central side (``serve``, called by central's embedded interpreter):
  unpickles the call with an allow-list, runs it against the ``aigis``
  namespace, pickles the result or describes the exception.

A call travels shim -> control socket -> agent -> SSH -> central and back;
nothing in between reads it. Frames (after the transport's length prefix):

- call:  ``b"C" + id (8 bytes, big-endian) + pickle((path, args, kwargs))``
- reply: ``b"R" + id + b"\\x00" + pickle(result)``
         ``b"R" + id + b"\\x01" + UTF-8 JSON {"type", "message", "args", "traceback"}``

Central never trusts what a LAN host sends: ``RestrictedUnpickler`` only
builds builtin value types and a few standard ones (``ALLOWED``), so a
crafted pickle cannot run code in the central process, and a path reaches
only what a core plugin exposes (``Core.resolve`` in ``loader.py``).
"""

from __future__ import annotations

import builtins
import io
import json
import pickle
import struct
import threading
import traceback
import types
from typing import Any, Callable, Dict, Optional, Tuple

PROTOCOL = 4

#: (module, name) pairs a pickle from a plugin may reference.
ALLOWED = frozenset({
    ("builtins", "complex"), ("builtins", "bytearray"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "range"), ("builtins", "slice"),
    ("collections", "OrderedDict"), ("collections", "deque"),
    ("datetime", "date"), ("datetime", "datetime"), ("datetime", "time"),
    ("datetime", "timedelta"), ("datetime", "timezone"),
    ("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID"),
})


class RestrictedUnpickler(pickle.Unpickler):
    """Refuses every global that is not on the allow-list."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(
            "refused to unpickle %s.%s: only builtin value types and a few standard "
            "ones (datetime, decimal, fractions, uuid, collections) may cross to central"
            % (module, name))


def _restricted_loads(data: bytes) -> Any:
    return RestrictedUnpickler(io.BytesIO(data)).load()


def _head(kind: bytes, call_id: int) -> bytes:
    return kind + struct.pack(">Q", call_id)


# -- central side ------------------------------------------------------------

def _error(call_id: int, exc_type: str, message: str, tb: str,
           exc: Optional[BaseException] = None) -> bytes:
    info: Dict[str, Any] = {"type": exc_type, "message": message, "traceback": tb}
    if exc is not None:
        info["builtin"] = _builtin_base(exc)
        args = _plain_args(exc)
        if args is not None:
            info["args"] = args
    try:
        body = json.dumps(info)
    except (TypeError, ValueError):
        info.pop("args", None)
        body = json.dumps(info)
    return _head(b"R", call_id) + b"\x01" + body.encode()


def _builtin_base(exc: BaseException) -> str:
    """The nearest builtin class of ``exc``: a plugin's ``except ValueError``
    catches a core plugin's own ``ValueError`` subclass too."""
    for klass in type(exc).__mro__:
        if getattr(builtins, klass.__name__, None) is klass:
            return klass.__name__
    return "Exception"


def _plain_args(exc: BaseException) -> Any:
    """The exception's args when they are plain JSON values, so the plugin
    can build the same exception (``str(KeyError("k"))`` is ``"'k'"``)."""
    args = exc.args
    if all(isinstance(a, (str, int, float, bool, type(None))) for a in args):
        return list(args)
    return None


def serve(core: Any, payload: bytes) -> bytes:
    """Answers one call frame; ``core.resolve(path)`` applies the reach rule."""
    if len(payload) < 9 or payload[:1] != b"C":
        return _error(0, "ValueError", "not a call frame", "")
    call_id = struct.unpack(">Q", payload[1:9])[0]
    try:
        path, args, kwargs = _restricted_loads(payload[9:])
        if not isinstance(path, str) or not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise TypeError("a call is (path, args, kwargs)")
    except Exception as e:  # noqa: BLE001 - the caller gets the reason
        return _error(call_id, type(e).__name__, str(e), "")
    try:
        target = core.resolve(path)
        if callable(target):
            result = target(*args, **kwargs)
        elif args or kwargs:
            raise TypeError("aigis.%s is a constant: call it with no arguments" % path)
        else:
            result = target
    except Exception as e:  # noqa: BLE001 - raised again in the plugin
        return _error(call_id, type(e).__name__, str(e), traceback.format_exc(), e)
    try:
        body = pickle.dumps(result, protocol=PROTOCOL)
    except Exception as e:  # noqa: BLE001
        return _error(call_id, "PicklingError",
                      "the result of aigis.%s cannot be pickled: %s" % (path, e), "")
    return _head(b"R", call_id) + b"\x00" + body


# -- plugin side -------------------------------------------------------------

class AigisRemoteError(Exception):
    """An exception raised by the real core; ``remote_traceback`` has its traceback.

    ``str(e)`` is the core's message, as a local call gives; the core's
    traceback is also a note (PEP 678), shown when the exception goes
    uncaught or is logged with ``log.exception``.
    """

    remote_type = "Exception"
    remote_traceback = ""


_remote_types: Dict[str, type] = {}


def remote_exception(exc_type: str, message: str, tb: str, args: Optional[list] = None,
                     builtin: Optional[str] = None) -> AigisRemoteError:
    """An exception named like the core's; its nearest builtin class is also
    a base, so ``except KeyError`` works in the plugin as it would in the core."""
    key = "%s(%s)" % (exc_type, builtin or exc_type)
    cls = _remote_types.get(key)
    if cls is None:
        base = getattr(builtins, builtin or exc_type, None)
        bases: Tuple[type, ...] = (AigisRemoteError,)
        if isinstance(base, type) and issubclass(base, Exception):
            bases = (base, AigisRemoteError)
        cls = type(exc_type, bases, {"remote_type": exc_type})
        _remote_types[key] = cls
    err = None
    for attempt in ((tuple(args),) if args is not None else ()) + ((message,),):
        try:
            err = cls(*attempt)
            break
        except Exception:  # noqa: BLE001 - a constructor with other needs
            continue
    if err is None:
        err = type(exc_type, (AigisRemoteError,), {"remote_type": exc_type})(message)
    err.remote_traceback = tb
    if tb:
        note = "Traceback in the AIGIS core:\n" + tb.rstrip()
        if hasattr(err, "add_note"):
            err.add_note(note)
        else:  # before 3.11: kept where 3.11's traceback module looks
            err.__notes__ = [note]
    return err


class Link:
    """Multiplexes calls over one transport: many threads, one reader.

    ``send(frame)`` writes a frame; the owner feeds every reply frame to
    ``deliver``. Each caller waits only for its own id.
    """

    def __init__(self, send: Callable[[bytes], None]) -> None:
        self._send = send
        self._lock = threading.Lock()
        self._next = 0
        self._waiting: Dict[int, list] = {}
        self._closed: Optional[str] = None

    def next_id(self) -> int:
        with self._lock:
            self._next += 1
            return self._next

    def request(self, call_id: int, frame: bytes) -> bytes:
        slot: list = [threading.Event(), None]
        with self._lock:
            if self._closed:
                raise ConnectionError(self._closed)
            self._waiting[call_id] = slot
        try:
            self._send(frame)
        except OSError:
            with self._lock:
                self._waiting.pop(call_id, None)
            raise
        slot[0].wait()
        if slot[1] is None:
            raise ConnectionError(self._closed or "the link to central closed")
        return slot[1]

    def deliver(self, call_id: int, reply: bytes) -> None:
        with self._lock:
            slot = self._waiting.pop(call_id, None)
        if slot is not None:
            slot[1] = reply
            slot[0].set()

    def close(self, reason: str) -> None:
        with self._lock:
            self._closed = reason
            waiting, self._waiting = self._waiting, {}
        for slot in waiting.values():
            slot[0].set()

    def call(self, path: str, args: tuple, kwargs: dict) -> Any:
        call_id = self.next_id()
        frame = _head(b"C", call_id) + pickle.dumps((path, args, kwargs), protocol=PROTOCOL)
        reply = self.request(call_id, frame)
        if reply[9:10] == b"\x00":
            return pickle.loads(reply[10:])
        info = json.loads(reply[10:].decode("utf-8", "replace"))
        raise remote_exception(info.get("type", "Exception"), info.get("message", ""),
                               info.get("traceback", ""), info.get("args"), info.get("builtin"))


class _Path:
    __slots__ = ("_link", "_path")

    def __init__(self, link: Link, path: str) -> None:
        self._link = link
        self._path = path

    def __getattr__(self, name: str) -> "_Path":
        if name.startswith("__"):
            raise AttributeError(name)
        return _Path(self._link, self._path + "." + name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.call(self._path, args, kwargs)

    def __repr__(self) -> str:
        return "<AigisProxy aigis.%s>" % self._path


class AigisProxy(types.ModuleType):
    """The ``aigis`` module of a proxied internal plugin: every attribute is
    a path into the real core; everything must be called, constants too.
    ``AIGISReload(name)`` is a control request, answered by the daemon."""

    def __init__(self, link: Link, reload: Optional[Callable[[str], Any]] = None) -> None:
        super().__init__("aigis", "The AIGIS core, reached through central.")
        self.__dict__["_link"] = link
        if reload is not None:
            self.__dict__["AIGISReload"] = reload

    def __getattr__(self, name: str) -> _Path:
        if name.startswith("__"):
            raise AttributeError(name)
        return _Path(self.__dict__["_link"], name)
