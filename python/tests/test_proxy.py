"""Unit tests of the AigisProxy wire (python/proxy.py)."""

import json
import os
import pickle
import struct
import sys
import threading
import types
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
import proxy  # noqa: E402


def namespace():
    root = types.ModuleType("aigis")
    m = types.ModuleType("aigis.m")
    m.K = 5
    m.add = lambda a, b: a + b
    m.boom = lambda: {}["nope"]
    m.obj = lambda: threading.Lock()
    root.m = m
    return root


class Loopback:
    """A transport that serves calls in a thread, like central would."""

    def __init__(self, root):
        self.root = root
        self.link = proxy.Link(self.send)

    def send(self, frame):
        def answer():
            reply = proxy.serve(self.root, frame)
            self.link.deliver(struct.unpack(">Q", reply[1:9])[0], reply)
        threading.Thread(target=answer).start()


class Evil:
    def __reduce__(self):
        return (os.system, ("true",))


class ProxyTest(unittest.TestCase):
    def setUp(self):
        self.aigis = proxy.AigisProxy(Loopback(namespace()).link)

    def test_calls_constants_and_errors(self):
        self.assertEqual(self.aigis.m.add(2, b=3), 5)
        self.assertEqual(self.aigis.m.K(), 5)
        with self.assertRaises(KeyError) as e:
            self.aigis.m.boom()
        self.assertIsInstance(e.exception, proxy.AigisRemoteError)
        self.assertIn("Traceback in the AIGIS core", str(e.exception))
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
        reply = proxy.serve(namespace(), frame)
        self.assertEqual(reply[9:10], b"\x01")  # dict + dict fails in the skill, not in unpickling
        self.assertEqual(json.loads(reply[10:])["type"], "TypeError")

    def test_many_threads_share_one_link(self):
        results = []
        threads = [threading.Thread(target=lambda i=i: results.append(self.aigis.m.add(i, i)))
                   for i in range(50)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.assertEqual(sorted(results), [2 * i for i in range(50)])

    def test_a_closed_link_fails_waiting_calls(self):
        link = proxy.Link(lambda frame: None)
        threading.Timer(0.1, lambda: link.close("gone")).start()
        with self.assertRaises(ConnectionError):
            link.call("m.add", (1, 2), {})


if __name__ == "__main__":
    unittest.main()
