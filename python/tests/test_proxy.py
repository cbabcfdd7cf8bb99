"""Unit tests of the AigisProxy wire (python/proxy.py)."""

import json
import logging
import os
import pickle
import socket
import struct
import sys
import tempfile
import threading
import time
import types
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import loader  # noqa: E402
import proxy  # noqa: E402


PLUGIN_FILES = {
    "AIGIS/AIGIS.core": "import m\nimport ratings\nimport smtplib\nimport functools\n"
                        "SKILLS = ['m', 'ratings', 'smtplib', 'part']\n"
                        "part = functools.partial(int, base=2)\n",
    "m.py": """import os
import smtplib
import threading
from os import getpid
from collections import OrderedDict

import helper

K = 5
UNITS = {"t": "C"}


def add(a, b):
    return a + b


def boom():
    return {}["nope"]


def big(n):
    return b"x" * n


def loud(n):
    raise ValueError("\x01" * n)


def obj():
    return threading.Lock()


class Tool:
    LEVEL = 3

    def run(self=None):
        return "ran"

    @staticmethod
    def static():
        return "static"

    @classmethod
    def klass(cls):
        return cls.__name__


class Sub(OrderedDict):
    pass


tool = Tool()
""",
    "helper.py": "def helps():\n    return 'helped'\n",
    "ratings/__init__.py": "from ratings.levels import SAFE\n",
    "ratings/levels.py": "SAFE = 'safe'\n",
    "venv/lib/python3/site-packages/dep.py": "def f():\n    return 1\n",
}


def core_with_plugin(tmp):
    root = os.path.join(tmp, "plug")
    for rel, text in PLUGIN_FILES.items():
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w") as f:
            f.write(text)
    core = loader.Core(types.ModuleType("aigis"),
                       lambda p: loader.plugin_logger(p, logging.NullHandler()))
    core.load("plug", root, os.path.join(root, "AIGIS", "AIGIS.core"))
    # A module of the plugin that lives in an installed tree under ENTRYPOINT.
    sys.path.append(os.path.join(root, "venv/lib/python3/site-packages"))
    import m  # noqa: F401 - the plugin's own module, loaded by AIGIS.core
    m.dep = __import__("dep")
    return core


class Loopback:
    """A transport that serves calls in a thread, like central would."""

    def __init__(self, core):
        self.core = core
        self.link = proxy.Link(self.send)
        self.sent = []

    def send(self, frame):
        self.sent.append(len(frame))
        def answer():
            reply = proxy.serve(self.core, frame)
            self.link.deliver(struct.unpack(">Q", reply[1:9])[0], reply)
        threading.Thread(target=answer).start()


def getattr_path(obj, path):
    if not path:
        return proxy._Path(obj._link, "")
    for part in path.split("."):
        obj = getattr(obj, part) if not part.startswith("_") else proxy._Path(
            obj._link, obj._path + "." + part)
    return obj


class Evil:
    def __reduce__(self):
        return (os.system, ("true",))


class FakeCentral:
    """Central's end of a direct call channel: connects to the plugin's
    socket, sends ``token`` first, then answers calls with ``core`` in a
    thread (or holds them unanswered while ``hold`` is set)."""

    def __init__(self, path, token, core):
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.connect(path)
        self.sock.sendall(struct.pack(">I", len(token)) + token)
        self.core = core
        self.hold = threading.Event()
        self.served = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        frames = proxy.FrameSocket(self.sock)
        while True:
            try:
                frame = frames.next()
            except (ConnectionError, OSError):
                return
            self.served += 1
            if not self.hold.is_set():
                frames.send(proxy.serve(self.core, bytes(frame)))

    def close(self):
        self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()


class WithCore(unittest.TestCase):
    """A core with the test plugin loaded, for the class's tests."""

    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        cls.core = core_with_plugin(cls.tmp.name)

    @classmethod
    def tearDownClass(cls):
        cls.core.shutdown()
        cls.tmp.cleanup()


class DirectCallsTest(WithCore):
    """A plugin's calls over its direct channel, and through the agent
    (``fallback``) whenever there is none."""

    def setUp(self):
        self.path = os.path.join(self.tmp.name, "calls-%s" % self.id().rsplit(".", 1)[-1])
        self.listener = socket.socket(socket.AF_UNIX)
        self.listener.bind(self.path)
        self.listener.listen(8)
        self.agent = Loopback(self.core)
        self.calls = proxy.DirectCalls(self.listener, "t0ken", self.agent.link)
        self.calls.LOOK_EVERY = 0
        self.aigis = proxy.AigisProxy(self.calls)

    def tearDown(self):
        if self.calls._conn is not None:
            self.calls._conn.close()
        self.listener.close()
        os.unlink(self.path)

    def test_only_central_is_taken_for_central(self):
        self.assertEqual(self.aigis.m.add(1, 2), 3)  # no channel yet: the agent
        impostor = FakeCentral(self.path, b"guess", self.core)
        self.assertEqual(self.aigis.m.add(2, 2), 4)
        self.assertIsNone(self.calls._direct)
        self.assertEqual(impostor.served, 0)
        impostor.close()
        central = FakeCentral(self.path, b"t0ken", self.core)
        relayed = len(self.agent.sent)
        self.assertEqual([self.aigis.m.add(i, 1) for i in range(5)], [1, 2, 3, 4, 5])
        self.assertIsNotNone(self.calls._direct)
        self.assertEqual((central.served, len(self.agent.sent)), (5, relayed))
        central.close()

    def test_a_channel_that_closes_fails_its_calls_in_flight_only(self):
        central = FakeCentral(self.path, b"t0ken", self.core)
        self.assertEqual(self.aigis.m.add(1, 1), 2)
        central.hold.set()
        caught = []

        def in_flight():
            try:
                self.aigis.m.add(1, 2)
            except ConnectionError as e:
                caught.append(str(e))

        caller = threading.Thread(target=in_flight)
        caller.start()
        deadline = time.time() + 5
        while central.served < 2 and time.time() < deadline:
            time.sleep(0.01)
        central.close()
        caller.join(5)
        self.assertEqual(caught, [proxy.DROPPED_IN_FLIGHT])
        # The next call goes through the agent.
        relayed = len(self.agent.sent)
        self.assertEqual(self.aigis.m.add(3, 3), 6)
        self.assertEqual(len(self.agent.sent), relayed + 1)
        # A channel that closed unseen: the call that finds it gone was not
        # sent, so it goes through the agent instead of failing.
        central = FakeCentral(self.path, b"t0ken", self.core)
        self.assertEqual(self.aigis.m.add(4, 4), 8)
        self.assertIsNotNone(self.calls._direct)
        central.close()
        time.sleep(0.1)
        self.assertEqual(self.aigis.m.add(5, 5), 10)
        self.assertEqual(len(self.agent.sent), relayed + 2)


class ProxyTest(WithCore):
    def setUp(self):
        self.aigis = proxy.AigisProxy(Loopback(self.core).link)

    def test_calls_constants_and_errors(self):
        self.assertEqual(self.aigis.m.add(2, b=3), 5)
        self.assertEqual(self.aigis.m.K(), 5)
        with self.assertRaises(KeyError) as e:
            self.aigis.m.boom()
        self.assertIsInstance(e.exception, proxy.AigisRemoteError)
        # str() is what a local call gives; the core's traceback is a note.
        self.assertEqual(str(e.exception), str(KeyError("nope")))
        self.assertIn("Traceback in the AIGIS core", e.exception.remote_traceback + "".join(
            getattr(e.exception, "__notes__", [])))
        self.assertIn("boom", e.exception.remote_traceback)
        with self.assertRaises(TypeError):
            self.aigis.m.K(1)
        with self.assertRaises(AttributeError):
            self.aigis.m.missing()
        with self.assertRaises(proxy.AigisRemoteError) as e:
            self.aigis.m.obj()
        self.assertEqual(e.exception.remote_type, "PicklingError")

    def test_private_paths_and_hostile_pickles_are_refused(self):
        with self.assertRaises(AttributeError):
            self.aigis.m._secret()
        with self.assertRaises(proxy.AigisRemoteError) as e:
            self.aigis.m.add(Evil(), 1)
        self.assertEqual(e.exception.remote_type, "UnpicklingError")
        self.assertIn("posix.system", str(e.exception))

    def test_allowed_standard_types_cross(self):
        import datetime
        import decimal
        value = {"d": datetime.date(2026, 1, 2), "x": decimal.Decimal("1.5"), "s": frozenset({1})}
        self.assertEqual(self.aigis.m.add(value["x"], 1), decimal.Decimal("2.5"))
        frame = b"C" + struct.pack(">Q", 7) + pickle.dumps(("m.add", (value, {}), {}), protocol=4)
        reply = proxy.serve(self.core, frame)
        self.assertEqual(reply[9:10], b"\x01")  # dict + dict fails in the skill, not in unpickling
        self.assertEqual(json.loads(reply[10:])["type"], "TypeError")

    def test_what_a_plugin_defines_is_reachable(self):
        self.assertEqual(self.aigis.ratings.SAFE(), "safe")
        self.assertEqual(self.aigis.ratings.levels.SAFE(), "safe")
        self.assertEqual(self.aigis.m.helper.helps(), "helped")
        self.assertEqual(self.aigis.m.UNITS(), {"t": "C"})
        self.assertEqual(self.aigis.m.Tool.run(), "ran")
        self.assertEqual(self.aigis.m.Tool.static(), "static")
        self.assertEqual(self.aigis.m.Tool.klass(), "Tool")
        self.assertEqual(self.aigis.m.Tool.LEVEL(), 3)
        self.assertEqual(self.aigis.part("101"), 5)  # an exposed skill, called

    def test_the_reach_rule_refuses_everything_else(self):
        refused = [
            "smtplib.socket.os.system",   # an exposed foreign module
            "m.smtplib.socket",           # a module the plugin imported
            "m.os.getpid",
            "m.getpid",                   # a builtin imported by name
            "m.threading.Lock",
            "m.OrderedDict",              # a class from the standard library
            "m.UNITS.update",             # a method of a value
            "m.add.__globals__",
            "m.K.real",
            "m.tool.run",                 # a method of an instance
            "m.Sub.fromkeys",             # inherited from a foreign class
            "m.dep.f",                    # installed package under ENTRYPOINT
            "part.keywords",              # an attribute of a skill's value
            "part.func",
            "AIGISReload",
            "os.system",
            "nothing",
            "m.missing",
            "",
            "m..add",
        ]
        for path in refused:
            with self.subTest(path=path):
                with self.assertRaises(AttributeError) as e:
                    getattr_path(self.aigis, path)()
                self.assertIn("is not exposed", str(e.exception))
        frame = b"C" + struct.pack(">Q", 9) + pickle.dumps(("m.os.getpid", (), {}), protocol=4)
        info = json.loads(proxy.serve(self.core, frame)[10:])
        self.assertEqual(info["type"], "AttributeError")
        self.assertIn("the module os", info["message"])

    def test_many_threads_share_one_link(self):
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(self.aigis.m.add(i, i)))
                   for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results), [2 * i for i in range(50)])

    def test_a_call_too_big_to_cross_fails_alone(self):
        loop = Loopback(self.core)
        aigis = proxy.AigisProxy(loop.link)
        with self.assertRaises(ValueError) as e:
            aigis.m.add(b"x" * (9 * 1024 * 1024), b"")
        self.assertRegex(str(e.exception), r"^the call's arguments are 9437\d\d\d bytes pickled; "
                                           r"at most %d may cross to central$" % proxy.MAX_CALL)
        self.assertEqual(loop.sent, [])  # refused before sending
        self.assertEqual(aigis.m.add(2, 3), 5)
        # The largest call that fits crosses.
        mib = b"x" * (1024 * 1024)
        room = proxy.MAX_CALL - (len(pickle.dumps(("m.add", (mib, b""), {}), protocol=4))
                                 - len(mib))
        self.assertEqual(len(aigis.m.add(b"x" * room, b"")), room)
        self.assertLessEqual(loop.sent[-1], proxy.MAX_PAYLOAD)

    def test_a_result_too_big_to_cross_is_an_error(self):
        with self.assertRaises(ValueError) as e:
            self.aigis.m.big(9 * 1024 * 1024)
        self.assertIsInstance(e.exception, proxy.AigisRemoteError)
        self.assertRegex(str(e.exception), r"^the result of aigis.m.big is 9437\d\d\d bytes pickled; "
                                           r"at most %d may cross back to the plugin$"
                                           % proxy.MAX_RESULT)
        self.assertEqual(self.aigis.m.add(2, 3), 5)
        mib = b"x" * (1024 * 1024)
        room = proxy.MAX_RESULT - (len(pickle.dumps(mib, protocol=4)) - len(mib))
        self.assertEqual(len(self.aigis.m.big(room)), room)

    def test_a_huge_exception_still_fits_in_a_reply(self):
        frame = b"C" + struct.pack(">Q", 5) + pickle.dumps(("m.loud", (9 * 1024 * 1024,), {}),
                                                           protocol=4)
        reply = proxy.serve(self.core, frame)
        self.assertLessEqual(len(reply), proxy.MAX_PAYLOAD)
        info = json.loads(reply[10:])
        self.assertEqual(info["type"], "ValueError")
        self.assertTrue(info["message"].startswith("\x01" * 1000))
        self.assertIn("characters cut", info["message"])
        with self.assertRaises(ValueError):
            self.aigis.m.loud(9 * 1024 * 1024)

    def test_callers_read_their_own_replies_and_hand_the_reading_on(self):
        """Over a real socket, with ``receive``: 8 threads call at once and
        the server answers in reverse order of arrival; every caller gets
        its own reply, and when the server goes, every waiting caller
        learns it."""
        ours, theirs = socket.socketpair()
        frames = proxy.FrameSocket(ours)
        link = proxy.Link(frames.send, frames.next)

        server_frames = proxy.FrameSocket(theirs)

        def server(batches):
            for n in batches:
                calls = [server_frames.next() for _ in range(n)]
                for frame in reversed(calls):
                    server_frames.send(proxy.serve(self.core, frame))
            theirs.close()

        threading.Thread(target=server, args=([8] * 5,), daemon=True).start()
        results, errors = {}, []

        def caller(i):
            try:
                results[i] = [link.call("m.add", (i, k), {}) for k in range(5)]
            except Exception as e:  # noqa: BLE001
                errors.append(e)

        threads = [threading.Thread(target=caller, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        self.assertEqual(errors, [])
        self.assertEqual(results, {i: [i + k for k in range(5)] for i in range(8)})
        with self.assertRaises(ConnectionError):
            link.call("m.add", (1, 2), {})
        with self.assertRaises(ConnectionError):
            link.call("m.add", (1, 2), {})
        ours.close()

    def test_a_read_interrupted_mid_frame_goes_on_where_it_stopped(self):
        """Ctrl-C while a large reply arrives: the next read finishes that
        frame, and the frames after it are read whole."""
        ours, theirs = socket.socketpair()
        frames = proxy.FrameSocket(ours)
        big, small = b"b" * 300000, b"small"
        sender = threading.Thread(target=lambda: theirs.sendall(
            struct.pack(">I", len(big)) + big + struct.pack(">I", len(small)) + small))
        real, calls = ours.recv_into, [0]

        class Interrupting:
            def recv_into(self, view):
                calls[0] += 1
                if calls[0] == 3:
                    raise KeyboardInterrupt
                return real(view[:1000])

        frames._sock = Interrupting()
        sender.start()
        with self.assertRaises(KeyboardInterrupt):
            frames.next()
        frames._sock = ours
        self.assertEqual(bytes(frames.next()), big)
        self.assertEqual(bytes(frames.next()), small)
        sender.join()
        ours.close()
        theirs.close()

    def test_frames_are_cut_where_they_end_however_they_arrive(self):
        """Several frames in one read, a length split across two reads, an
        empty frame, and a long frame after a short one."""
        ours, theirs = socket.socketpair()
        frames = proxy.FrameSocket(ours)
        long = bytes(range(256)) * 1000
        wire = b"".join(struct.pack(">I", len(f)) + f for f in (b"one", b"", b"three", long))

        def sender():
            theirs.sendall(wire[:14])   # "one", "", and 3 bytes of a length
            time.sleep(0.05)
            theirs.sendall(wire[14:])
            theirs.close()

        threading.Thread(target=sender).start()
        self.assertEqual([bytes(frames.next()) for _ in range(4)],
                         [b"one", b"", b"three", long])
        with self.assertRaises(ConnectionError):
            frames.next()
        ours.close()

    def test_a_long_frame_given_back_is_read_into_again(self):
        ours, theirs = socket.socketpair()
        frames, server = proxy.FrameSocket(ours), proxy.FrameSocket(theirs)
        long = bytes(range(256)) * 1024
        sizes = [len(long), len(long) - 1000, len(long) // 3]
        sender = threading.Thread(target=lambda: [server.send(long[:n]) for n in sizes])
        sender.start()
        first = frames.next()
        self.assertEqual(bytes(first), long)
        frames.recycle(first)
        second = frames.next()
        self.assertIs(second, first)  # a little shorter: the same buffer
        self.assertEqual(bytes(second), long[:sizes[1]])
        frames.recycle(second)
        third = frames.next()  # less than half: a buffer of its own
        self.assertIsNot(third, first)
        self.assertEqual(bytes(third), long[:sizes[2]])
        sender.join()
        ours.close()
        theirs.close()

    def test_paths_are_kept_as_attributes_up_to_a_bound(self):
        aigis = proxy.AigisProxy(proxy.Link(lambda frame: None))
        self.assertIs(aigis.m.add, aigis.m.add)
        for i in range(proxy._KEPT_PATHS + 10):
            getattr(aigis.many, "n%d" % i)
        self.assertLessEqual(len(vars(aigis.many)), proxy._KEPT_PATHS)
        self.assertEqual(repr(aigis.many.n999), "<AigisProxy aigis.many.n999>")
        with self.assertRaises(AttributeError):
            aigis.m.__wrapped__

    def test_a_closed_link_fails_waiting_calls(self):
        link = proxy.Link(lambda frame: None)
        threading.Timer(0.1, lambda: link.close("gone")).start()
        with self.assertRaises(ConnectionError):
            link.call("m.add", (1, 2), {})


if __name__ == "__main__":
    unittest.main()
