"""`aigis shell`: a Python REPL whose ``aigis`` is the live core of a running
AIGIS, reached through the same AigisProxy an internal plugin gets.

``aigis shell`` connects to the daemon's control socket, asks for a shell
(``{"cmd": "shell"}``) and, once the daemon agreed, runs
``python3 -q -i shell.py`` with that connection open as
``AIGIS_SHELL_FD``, and ``proxy.py`` beside this file in a private
directory, which this script removes once it has loaded it. On that
connection, frames are a 4-byte big-endian length and a payload, as on an
internal plugin's fd 3: ``b"C" + id + pickle((path, args, kwargs))`` out,
``b"R" + id + ...`` back. The daemon answers each call with the reach rule
and limits a plugin's calls get. Stdlib only.
"""


def _connect():  # type: ignore[no-untyped-def]
    import importlib.util
    import os
    import shutil
    import socket
    import sys

    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("aigis_proxy", os.path.join(here, "proxy.py"))
    assert spec is not None and spec.loader is not None
    proxy = importlib.util.module_from_spec(spec)
    sys.modules["aigis_proxy"] = proxy
    spec.loader.exec_module(proxy)
    shutil.rmtree(here, ignore_errors=True)
    # Python put this file's directory first on sys.path; it is gone.
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != here]

    frames = proxy.FrameSocket(socket.socket(fileno=int(os.environ.pop("AIGIS_SHELL_FD"))))

    def receive() -> bytes:
        try:
            return frames.next()
        except ConnectionError:
            raise ConnectionError("the daemon closed the shell's connection") from None

    link = proxy.Link(frames.send, receive, frames.recycle)
    core = proxy.AigisProxy(link)
    sys.modules["aigis"] = core
    sys.stderr.write("aigis shell: %s\n`aigis` is the live core (e.g. aigis.<plugin>.<skill>(...); "
                     "constants are called too); Ctrl-D leaves.\n"
                     % os.environ.pop("AIGIS_SHELL_HELLO", "connected"))
    return core


aigis = _connect()
del _connect
