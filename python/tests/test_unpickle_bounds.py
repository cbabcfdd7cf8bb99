"""What a call's pickle may make central allocate (python/proxy.py).

The hostile pickles are tiny and would each cost central a gigabyte or more
(or minutes of CPU). They run in a child process with its address space
capped a few hundred MiB above where it starts, so a regression fails the
test with a MemoryError instead of taking the machine's memory; the child
also reports tracemalloc's peak, which shows the refusal comes before the
allocation.
"""

import collections
import datetime
import decimal
import fractions
import io
import json
import os
import pickle
import struct
import subprocess
import sys
import tracemalloc
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
PYTHON_DIR = os.path.join(HERE, "..")
sys.path.insert(0, PYTHON_DIR)
import proxy  # noqa: E402

MiB = 1024 * 1024


# -- hand-written opcodes ----------------------------------------------------

def u(text):
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw          # SHORT_BINUNICODE


def glob(module, name):
    return u(module) + u(name) + b"\x93"               # STACK_GLOBAL


def binint(n):
    return b"J" + struct.pack("<i", n)                 # BININT


def call_of(value):
    """A whole call frame: ("m.echo", (value,), {}) around opcodes for value."""
    body = b"\x80\x04" + u("m.echo") + value + b"\x85" + b"}" + b"\x87" + b"."
    return b"C" + struct.pack(">Q", 7) + body


HOSTILE = {
    # bytearray(2**30): REDUCE with an allowed class and a big int.
    "bytearray": call_of(glob("builtins", "bytearray") + binint(2 ** 30) + b"\x85R"),
    # frozenset(range(3 * 10**7)): a lazy range expanded by an allowed class.
    "frozenset_range": call_of(glob("builtins", "frozenset") + glob("builtins", "range")
                               + binint(0) + binint(3 * 10 ** 7) + b"\x86R\x85R"),
    # set(range(...)) through the memo, as REDUCE of set.
    "set_range_memo": call_of(glob("builtins", "range") + binint(0) + binint(2 ** 31 - 1)
                              + b"\x86R\x94" + b"0" + glob("builtins", "set")
                              + b"h\x00" + b"\x85R"),
    # A memo index of 2**26: the C unpickler sizes its memo table by it (1 GiB).
    "memo_index": call_of(b"N" + b"r" + struct.pack("<I", 2 ** 26)),
    # BINBYTES8 that claims 4 GiB: the C unpickler allocates before reading.
    "binbytes8": call_of(b"\x8e" + struct.pack("<Q", 2 ** 32) + b"abc"),
    # Fraction("1e300000000"): a 30-byte string asks for 10**300000000.
    "fraction_exponent": call_of(glob("fractions", "Fraction") + u("1e300000000") + b"\x85R"),
    # The same with the string too long for the pre-scan to keep: the
    # constructor's own check refuses it.
    "fraction_exponent_long": call_of(glob("fractions", "Fraction")
                                      + b"X" + struct.pack("<I", 1011) + b"1e300000000"
                                      + b" " * 1000 + b"\x85R"),
    # 500,000 one-byte EMPTY_SET opcodes: about 115 MiB from a 0.5 MB pickle.
    "empty_sets": call_of(b"(" + b"\x8f" * 500000 + b"l"),
    # A protocol this central cannot know.
    "protocol_6": b"C" + struct.pack(">Q", 7) + b"\x80\x06" + u("m.echo") + b")}\x87.",
}


CHILD = r"""
import json, resource, sys, time, tracemalloc
sys.path.insert(0, sys.argv[1])
import proxy

class Core:
    def resolve(self, path):
        return lambda *a, **k: len(a)

frame = sys.stdin.buffer.read()
with open("/proc/self/status") as f:
    vm = [int(l.split()[1]) * 1024 for l in f if l.startswith("VmSize")][0]
resource.setrlimit(resource.RLIMIT_AS, (vm + int(sys.argv[2]) * 1024 * 1024,
                                        resource.RLIM_INFINITY))
tracemalloc.start()
start = time.time()
reply = proxy.serve(Core(), frame)
seconds = time.time() - start
peak = tracemalloc.get_traced_memory()[1]
tracemalloc.stop()
if reply[9:10] == b"\x00":
    out = {"type": "loaded", "message": ""}
else:
    out = json.loads(reply[10:])
out.update(peak=peak, seconds=seconds)
print(json.dumps(out))
"""


def serve_in_child(frame, headroom_mib=384, timeout=20):
    """proxy.serve in a child whose address space may grow by headroom_mib."""
    try:
        done = subprocess.run([sys.executable, "-c", CHILD, PYTHON_DIR, str(headroom_mib)],
                              input=frame, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"type": "timeout after %d s" % timeout, "message": "", "peak": -1}
    if done.returncode != 0:
        return {"type": "child failed", "message": done.stderr.decode()[-2000:], "peak": -1}
    return json.loads(done.stdout.decode().strip().splitlines()[-1])


class HostilePicklesTest(unittest.TestCase):
    def assert_refused(self, name, *words):
        out = serve_in_child(HOSTILE[name])
        summary = "%s: %s %r, peak %.1f MiB" % (name, out["type"], out["message"][:300],
                                                out["peak"] / MiB)
        self.assertEqual(out["type"], "UnpicklingError", summary)
        for word in words:
            self.assertIn(word, out["message"], summary)
        # Refused before the allocation: nothing near the size asked for.
        self.assertGreaterEqual(out["peak"], 0, summary)
        self.assertLess(out["peak"], 4 * MiB, summary)
        # No CPU burnt either (tracemalloc slows the scan about 20 times).
        self.assertLess(out["seconds"], 10, summary)

    def test_bytearray_of_a_gigabyte(self):
        self.assert_refused("bytearray", "bytearray", "1073741824")

    def test_frozenset_of_a_huge_range(self):
        self.assert_refused("frozenset_range", "frozenset", "30000000")

    def test_set_of_a_range_from_the_memo(self):
        self.assert_refused("set_range_memo", "set")

    def test_huge_memo_index(self):
        self.assert_refused("memo_index", "memo index 67108864")

    def test_binbytes8_longer_than_the_pickle(self):
        self.assert_refused("binbytes8", "BINBYTES8", "truncated")

    def test_fraction_with_a_huge_exponent(self):
        self.assert_refused("fraction_exponent", "Fraction", "exponent")

    def test_fraction_string_checked_by_the_constructor(self):
        self.assert_refused("fraction_exponent_long", "Fraction", "exponent")

    def test_many_one_byte_containers(self):
        self.assert_refused("empty_sets", "would build more than")

    def test_unknown_protocol(self):
        self.assert_refused("protocol_6", "protocol 6")


def loads(data):
    return proxy.restricted_loads(data)


def refused(test, data, *words):
    with test.assertRaises(pickle.UnpicklingError) as e:
        loads(data)
    for word in words:
        test.assertIn(word, str(e.exception))
    return str(e.exception)


class ScanTest(unittest.TestCase):
    """Limits of the pre-scan that need no child process."""

    def test_deep_mark_nesting(self):
        depth = proxy.MAX_MARKS + 1
        refused(self, b"\x80\x04" + b"(" * depth + b"t" * depth + b".", "nested")
        ok = proxy.MAX_MARKS
        self.assertIsInstance(loads(b"\x80\x04" + b"(" * ok + b"t" * ok + b"."), tuple)

    def test_opcode_count(self):
        n = proxy.MAX_OPCODES // 2 + 1
        refused(self, b"\x80\x04" + b"N0" * n + b"N.", "opcodes")

    def test_big_integers(self):
        big = (1 << (8 * proxy.MAX_LONG_BYTES - 1)) - 1
        self.assertEqual(loads(pickle.dumps(big, protocol=4)), big)
        refused(self, pickle.dumps(big << 8, protocol=4), "LONG")
        refused(self, b"\x80\x04\x8b" + struct.pack("<i", MiB) + b"\x01" * MiB + b".", "LONG4")

    def test_memo_indexes_follow_what_was_stored(self):
        refused(self, b"\x80\x04Nr" + struct.pack("<I", proxy.MAX_MEMO + 1) + b".",
                "memo index")
        refused(self, b"\x80\x04Nh\x05.", "memo")            # GET of nothing stored
        self.assertIsNone(loads(b"\x80\x04Nr" + struct.pack("<I", 1000) + b"."))

    def test_opcodes_central_does_not_take(self):
        refused(self, b"\x80\x04I1\n.", "INT")
        refused(self, b"\x80\x04L" + b"9" * 100000 + b"\n.", "LONG")
        refused(self, b"\x80\x04Pid\n.", "PERSID")
        refused(self, b"\x80\x04\x82\x01.", "EXT1")
        refused(self, b"\x80\x04Q.", "BINPERSID")
        refused(self, b"\x80\x04N.junk", "after")
        refused(self, b"\x80\x04N", "truncated")
        refused(self, b"\x80\x04\xff.", "opcode")
        refused(self, b"\x80\x04" + glob("builtins", "set") + b"N\x81.", "NEWOBJ")

    def test_globals_are_never_changed(self):
        # BUILD on the Fraction class would set attributes of central's class.
        state = b"N}" + u("__repr__") + b"Ns\x86"        # (None, {"__repr__": None})
        refused(self, b"\x80\x04" + glob("fractions", "Fraction") + state + b"b.", "BUILD")
        self.assertEqual(repr(fractions.Fraction(1, 2)), "Fraction(1, 2)")
        refused(self, b"\x80\x04" + glob("posix", "system") + b".", "posix.system")

    def test_constructors_check_what_they_get_at_load_time(self):
        unpickler = proxy.RestrictedUnpickler(io.BytesIO(b""), proxy.Budget(100))
        frozen = unpickler.find_class("builtins", "frozenset")
        with self.assertRaises(pickle.UnpicklingError):
            frozen(range(3 * 10 ** 7))
        with self.assertRaises(pickle.UnpicklingError):
            unpickler.find_class("builtins", "bytearray")(2 ** 30)
        with self.assertRaises(pickle.UnpicklingError):
            unpickler.find_class("collections", "deque")(range(10 ** 12), 1)
        with self.assertRaises(pickle.UnpicklingError):
            unpickler.find_class("fractions", "Fraction")(decimal.Decimal("1e999999999"))
        with self.assertRaises(pickle.UnpicklingError):
            unpickler.find_class("builtins", "bytearray")("x", "unicode_escape")
        self.assertEqual(frozen(range(3)), frozenset({0, 1, 2}))


LEGIT = {
    "datetime": datetime.datetime(2026, 11, 24, 12, 0, 1, 5),
    "aware": datetime.datetime(2026, 1, 2, 3, tzinfo=datetime.timezone(
        datetime.timedelta(hours=2), "X")),
    "utc": datetime.datetime.now(datetime.timezone.utc),
    "date": datetime.date(2026, 1, 2),
    "time": datetime.time(3, 4, 5),
    "delta": datetime.timedelta(days=3, seconds=4),
    "decimal": decimal.Decimal("-1234.5678e-3"),
    "decimals": [decimal.Decimal(i) / 7 for i in range(100)],
    "fraction": fractions.Fraction(22, 7),
    "big_fraction": fractions.Fraction(2 ** 3000 + 1, 3 ** 1000),
    "uuid": uuid.UUID("12345678-1234-5678-1234-567812345678"),
    "complex": complex(1.5, -2),
    "range": range(0, 10 ** 12, 7),
    "slice": slice(1, None, 2),
    "odict": collections.OrderedDict((str(i), i) for i in range(1000)),
    "deque": collections.deque(range(1000), maxlen=2000),
    "bytearray": bytearray(b"abc" * 1000),
    "set": set(range(5000)),
    "frozenset": frozenset("item%d" % i for i in range(5000)),
    "nested": {"a": {"b": [{"c": (1, 2.5, None, True)}] * 3, "d": {"e": {"f": {}}}}},
    "deep": [[[[[[[[[[[["deep"]]]]]]]]]]]],
    "bytes": b"\x00\xff" * (MiB // 2),
    "text": "é€😀" * 1000,
    "ints": [-5, 0, 255, 256, 65535, 2 ** 31, -2 ** 63, 2 ** 200],
    "dicts": [{"id": i, "name": "n%d" % i, "ok": i % 2 == 0} for i in range(10000)],
}


class Echo:
    def resolve(self, path):
        return lambda x: x


class LegitValuesTest(unittest.TestCase):
    def test_values_cross_at_every_protocol_a_plugin_uses(self):
        for protocol in (3, 4, 5):
            for name, value in LEGIT.items():
                with self.subTest(protocol=protocol, value=name):
                    data = pickle.dumps(value, protocol=protocol)
                    self.assertEqual(loads(data), value)

    def test_values_cross_through_serve(self):
        for name, value in LEGIT.items():
            with self.subTest(value=name):
                frame = b"C" + struct.pack(">Q", 3) + pickle.dumps(
                    ("x.echo", (value,), {}), protocol=proxy.PROTOCOL)
                reply = proxy.serve(Echo(), frame)
                self.assertEqual(reply[9:10], b"\x00", reply[:300])
                self.assertEqual(pickle.loads(reply[10:]), value)

    def test_the_estimate_covers_what_loading_takes(self):
        # The shapes that cost the most per pickled byte: whatever the
        # checks let through is bounded by their estimate.
        shapes = {
            "empty_sets": [set() for _ in range(8000)],
            "empty_dicts": [{} for _ in range(20000)],
            "empty_lists": [[] for _ in range(20000)],
            "deques": [collections.deque([i]) for i in range(3000)],
            "odicts": [collections.OrderedDict(a=i) for i in range(10000)],
            "frozensets": [frozenset({i}) for i in range(10000)],
            "int_set": set(range(50000)),
            "dicts": [{"a": i, "b": str(i)} for i in range(20000)],
            "strs": ["s%07d" % i for i in range(50000)],
            "uuids": [uuid.UUID(int=i) for i in range(10000)],
            "bytes": b"x" * (4 * MiB),
        }
        for name, value in shapes.items():
            with self.subTest(shape=name):
                data = pickle.dumps(value, protocol=4)
                budget = proxy.Budget(len(data))
                tracemalloc.start()
                loaded = proxy.restricted_loads(data, budget)
                peak = tracemalloc.get_traced_memory()[1]
                tracemalloc.stop()
                self.assertEqual(loaded, value)
                del loaded
                self.assertLessEqual(peak, budget.spent,
                                     "%s: %d bytes pickled, estimated %d, took %d"
                                     % (name, len(data), budget.spent, peak))
                self.assertLessEqual(budget.spent, budget.limit)


if __name__ == "__main__":
    unittest.main()
