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
crafted pickle cannot run code in the central process; ``scan`` and the
checked constructors refuse, before allocating, a pickle that would make
central build more than a small multiple of its size (see ``Budget``); and
a path reaches only what a core plugin exposes (``Core.resolve`` in
``loader.py``).
"""

from __future__ import annotations

import builtins
import io
import itertools
import json
import pickle
import select
import socket
import struct
import sys
import threading
import time
import traceback
import types
from typing import Any, Callable, Dict, List, Optional, Tuple

PROTOCOL = 4

#: The largest frame between a shim and its agent: a call or a reply, with
#: its kind and id. It is what fits in one ``Event::Control`` frame from the
#: agent to central (``proto::MAX_CONTROL``: the 8 MiB ``MAX_FRAME`` less
#: 64 KiB for the envelope; a Rust test keeps the two equal). A call or a
#: result over it fails alone with a ValueError; the link goes on.
MAX_PAYLOAD = 8 * 1024 * 1024 - 64 * 1024
#: The largest pickle of a call (``b"C"`` and the id come first).
MAX_CALL = MAX_PAYLOAD - 9
#: The largest pickle of a result (``b"R"``, the id and the status first).
MAX_RESULT = MAX_PAYLOAD - 10

#: (module, name) pairs a pickle from a plugin may reference.
ALLOWED = frozenset({
    ("builtins", "complex"), ("builtins", "bytearray"), ("builtins", "set"),
    ("builtins", "frozenset"), ("builtins", "range"), ("builtins", "slice"),
    ("collections", "OrderedDict"), ("collections", "deque"),
    ("datetime", "date"), ("datetime", "datetime"), ("datetime", "time"),
    ("datetime", "timedelta"), ("datetime", "timezone"),
    ("decimal", "Decimal"), ("fractions", "Fraction"), ("uuid", "UUID"),
})

# -- what an unpickled call may cost central ---------------------------------
#
# A pickle is a program: a few bytes can ask the unpickler for gigabytes
# (``bytearray(2**30)``, ``frozenset(range(3 * 10**7))``, a memo index of
# 2**26, a BINBYTES8 that claims 4 GiB) or minutes of CPU
# (``Fraction("1e300000000")``). Central refuses such a call before
# allocating anything for it, in two steps:
#
# - ``scan`` reads the opcodes first (cheap, nothing is built): it refuses
#   what plugins never send (protocol-0 text opcodes, extensions, persistent
#   ids, out-of-band buffers, a protocol above 5), lengths that run past the
#   end, more than MAX_OPCODES opcodes, MARKs nested deeper than MAX_MARKS,
#   memo indexes far past what was stored, integers over MAX_LONG_BYTES, a
#   global that is not allowed or that is changed (BUILD, APPEND, ...) rather
#   than called, and calls of the allowed classes whose arguments it can see
#   and that would be too big. It adds up an estimate of the bytes each
#   opcode makes the unpickler allocate.
# - ``RestrictedUnpickler.find_class`` hands out, for the classes whose
#   construction can cost more than a constant (``_CONSTRUCTORS``), callables
#   that check their real arguments and charge their cost before building.
#
# Both draw on one ``Budget`` per call: BUILD_FLOOR + BUILD_FACTOR times the
# pickle's length. Plain data costs 4-20 times its pickled size (lists of
# small dicts about 25); a list of many tiny containers (empty sets, deques)
# up to about 130 times, so tens of thousands of those are refused. The
# estimate is an upper bound of what the C unpickler allocates (tested). A
# range is lazy and may be of any length; expanding it (``set(range(...))``)
# is charged.

#: Bytes any call may build, whatever its size.
BUILD_FLOOR = 4 * 1024 * 1024
#: Bytes a call may build per byte of its pickle, beyond BUILD_FLOOR.
BUILD_FACTOR = 32
#: Opcodes in one call's pickle.
MAX_OPCODES = 2000000
#: MARKs open at once (nesting of tuples and batched lists, dicts, sets);
#: the pickler itself stops near 1,000 levels (the recursion limit).
MAX_MARKS = 1000
#: How far past the number of values stored so far a memo index may reach
#: (the C unpickler sizes its memo table by the largest index).
MAX_MEMO = 100000
#: Bytes of one integer (LONG1/LONG4): 32,768 bits.
MAX_LONG_BYTES = 4096
#: Decimal exponent of a string or Decimal that Fraction() turns into an
#: exact ratio (it computes 10**exponent).
MAX_EXPONENT = 10000
#: Characters of a string Fraction() parses (int() of it is quadratic).
MAX_FRACTION_TEXT = 20000


def _refused(why: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError("refused to unpickle the call: " + why)


def _refused_global(module: str, name: str) -> pickle.UnpicklingError:
    return pickle.UnpicklingError(
        "refused to unpickle %s.%s: only builtin value types and a few standard "
        "ones (datetime, decimal, fractions, uuid, collections) may cross to central"
        % (module, name))


class Budget:
    """The bytes one call may make central allocate while it is unpickled."""

    __slots__ = ("size", "limit", "spent")

    def __init__(self, size: int) -> None:
        self.size = size
        self.limit = BUILD_FLOOR + BUILD_FACTOR * size
        self.spent = 0

    def over(self, what: str, cost: int) -> pickle.UnpicklingError:
        return _refused(
            "%s would build more than it may: about %d bytes with what came before, "
            "and a call of %d bytes pickled may build at most %d (%d MiB + %d x its size)"
            % (what, cost, self.size, self.limit, BUILD_FLOOR // (1024 * 1024), BUILD_FACTOR))

    def charge(self, cost: int, what: str) -> None:
        if self.spent + cost > self.limit:
            raise self.over(what, self.spent + cost)
        self.spent += cost


def _show(name: str, args: tuple) -> str:
    """A call as a message shows it: ``bytearray(1073741824)``."""
    shown = []
    for arg in args:
        if isinstance(arg, int) and arg.bit_length() > 64:
            shown.append("<int of %d bits>" % arg.bit_length())
        elif isinstance(arg, (int, float, range, type(None))) or (
                isinstance(arg, str) and len(arg) <= 40):
            shown.append(repr(arg))
        else:
            try:
                shown.append("<%s of length %d>" % (type(arg).__name__, len(arg)))
            except (TypeError, OverflowError):
                shown.append("<%s>" % type(arg).__name__)
    return "%s(%s)" % (name, ", ".join(shown))


def _length(value: Any, what: str) -> int:
    try:
        return len(value)
    except OverflowError:
        raise _refused("%s of a range longer than any list could be" % what) from None
    except TypeError:
        raise _refused("%s takes only a sized value here, not %s"
                       % (what, type(value).__name__)) from None


def _per_item(iterable: Any) -> int:
    """Bytes of each new object iterating ``iterable`` makes."""
    if isinstance(iterable, range):
        return 32
    if isinstance(iterable, str):
        return 80
    return 0


def _cost_bytearray(args: tuple) -> int:
    if not args:
        return 64
    source = args[0]
    if isinstance(source, str):
        if len(args) != 2 or str(args[1]).lower().replace("_", "-") not in (
                "latin-1", "latin1", "iso-8859-1", "ascii", "utf-8", "utf8"):
            raise _refused("bytearray(str, ...) only with latin-1, ascii or utf-8")
        return 64 + 4 * len(source)
    if isinstance(source, int):
        return 64 + max(source, 0)
    return 64 + _length(source, "bytearray()") * (1 + _per_item(source))


def _cost_set(args: tuple) -> int:
    if not args:
        return 240
    return 240 + _length(args[0], "set()") * (64 + _per_item(args[0]))


def _cost_deque(args: tuple) -> int:
    if not args:
        return 640
    return 640 + _length(args[0], "deque()") * (16 + _per_item(args[0]))


def _cost_ordered_dict(args: tuple) -> int:
    if not args:
        return 240
    return 240 + _length(args[0], "OrderedDict()") * 128


# decimal, fractions, re and pickletools are imported where central needs
# them: a plugin's shim loads this file too, and would pay 10 ms or more
# at every start for modules only central uses.


def _cost_complex(args: tuple) -> int:
    import decimal
    import fractions
    for arg in args:
        if not isinstance(arg, (int, float, complex, str, decimal.Decimal, fractions.Fraction)):
            raise _refused("complex() of %s" % type(arg).__name__)
    return 64


def _cost_decimal(args: tuple) -> int:
    value = args[0] if args else 0
    if isinstance(value, str):
        return 128 + len(value)
    if isinstance(value, (tuple, list)) and len(value) == 3 and isinstance(value[1], (tuple, list)):
        return 128 + len(value[1])
    if isinstance(value, int):
        return 128 + value.bit_length() // 3
    return 128


_EXPONENT = r"[eE]\s*([-+]?[0-9_]+)"


def _cost_fraction(args: tuple) -> int:
    import decimal
    import fractions
    import re
    cost = 256
    for arg in args:
        if isinstance(arg, (int, float, fractions.Fraction)):
            continue
        if isinstance(arg, str):
            if len(arg) > MAX_FRACTION_TEXT:
                raise _refused("Fraction() of a string of %d characters (at most %d)"
                               % (len(arg), MAX_FRACTION_TEXT))
            match = re.search(_EXPONENT, arg)  # compiled once, by re's cache
            digits = match.group(1).replace("_", "") if match else "0"
            if len(digits.lstrip("+-").lstrip("0")) > 9:
                raise _refused("Fraction() of a number with a %d-digit exponent" % len(digits))
            exponent = int(digits)
            cost += 2 * len(arg)
        elif isinstance(arg, decimal.Decimal):
            exponent = arg.as_tuple().exponent if arg.is_finite() else 0
            cost += len(arg.as_tuple().digits)
        else:
            raise _refused("Fraction() of %s" % type(arg).__name__)
        if not isinstance(exponent, int) or abs(exponent) > MAX_EXPONENT:
            raise _refused("Fraction() of a number with the decimal exponent %s (at most %d "
                           "either way: the exact value would need 10**exponent)"
                           % (exponent, MAX_EXPONENT))
        cost += abs(exponent) // 2
    return cost


#: The allowed classes whose construction can cost more than a constant:
#: how to tell the cost of a call from its arguments, before building.
_CONSTRUCTORS: Dict[Tuple[str, str], Callable[[tuple], int]] = {
    ("builtins", "bytearray"): _cost_bytearray,
    ("builtins", "set"): _cost_set,
    ("builtins", "frozenset"): _cost_set,
    ("builtins", "complex"): _cost_complex,
    ("collections", "deque"): _cost_deque,
    ("collections", "OrderedDict"): _cost_ordered_dict,
    ("decimal", "Decimal"): _cost_decimal,
    ("fractions", "Fraction"): _cost_fraction,
}


class _Checked:
    """An allowed class as the unpickler sees it: calling it checks and
    charges the arguments first. Not a class, so NEWOBJ cannot bypass the
    check; no ``__dict__``, so BUILD cannot change it."""

    __slots__ = ("_cls", "_cost", "_budget", "_name")

    def __init__(self, cls: type, cost: Callable[[tuple], int], budget: Budget,
                 name: str) -> None:
        self._cls = cls
        self._cost = cost
        self._budget = budget
        self._name = name

    def __call__(self, *args: Any) -> Any:
        self._budget.charge(self._cost(args), _show(self._name, args))
        return self._cls(*args)


class RestrictedUnpickler(pickle.Unpickler):
    """Builds only allow-listed globals, through ``_Checked`` where
    building can cost more than a constant. Use ``restricted_loads``: it
    scans the pickle first."""

    def __init__(self, file: Any, budget: Budget) -> None:
        super().__init__(file)
        self._budget = budget

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) not in ALLOWED:
            raise _refused_global(module, name)
        cls = super().find_class(module, name)
        cost = _CONSTRUCTORS.get((module, name))
        if cost is None:
            return cls
        return _Checked(cls, cost, self._budget, name)

    def persistent_load(self, pid: Any) -> Any:
        raise _refused("persistent ids are not used")


def restricted_loads(data: bytes, budget: Optional[Budget] = None) -> Any:
    """Unpickles a call from a plugin, or raises UnpicklingError before
    allocating more than ``budget`` (by default: what a call of this size may)."""
    if budget is None:
        budget = Budget(len(data))
    scan(data, budget)
    return RestrictedUnpickler(io.BytesIO(data), budget).load()


class _Sym:
    """What the scan knows of a stack item that is not a plain value."""

    __slots__ = ("what",)

    def __init__(self, what: str) -> None:
        self.what = what


class _Global:
    __slots__ = ("module", "name")

    def __init__(self, module: str, name: str) -> None:
        self.module = module
        self.name = name


_ANY = _Sym("a value")
_UNSET = _Sym("nothing")
_MARK = _Sym("a mark")
_ODICT = _Sym("an OrderedDict")
_DEQUE = _Sym("a deque")
#: Stack items the scan knows exactly: a tuple of them is known too, and
#: allowed constructors called with known arguments are checked at once.
_KNOWN = frozenset({int, bool, float, str, range, tuple, type(None)})

#: Opcodes plugins never send, by code, with the reason.
_REFUSED_OPS = {
    b"I"[0]: "protocol-0 text", b"L"[0]: "protocol-0 text", b"F"[0]: "protocol-0 text",
    b"S"[0]: "protocol-0 text", b"V"[0]: "protocol-0 text", b"g"[0]: "protocol-0 text",
    b"p"[0]: "protocol-0 text", b"T"[0]: "Python 2 string", b"U"[0]: "Python 2 string",
    b"i"[0]: "protocol-0 instance", b"o"[0]: "protocol-0 instance",
    b"P"[0]: "persistent id", b"Q"[0]: "persistent id",
    0x82: "copyreg extension", 0x83: "copyreg extension", 0x84: "copyreg extension",
    0x97: "out-of-band buffer", 0x98: "out-of-band buffer",
}


def _op_name(code: int) -> str:
    import pickletools
    op = pickletools.code2op.get(chr(code))
    return op.name if op is not None else "0x%02x" % code


#: Central's fast path of ``scan`` for plain data (``aigis-central/src/scan.rs``),
#: set when central starts: ``plain_cost(data, limit)`` is what ``scan`` would
#: charge, or None for anything else, which ``scan`` then reads itself.
plain_cost: Optional[Callable[[bytes, int], Optional[int]]] = None


def scan(data: bytes, budget: Budget) -> None:
    """Checks a pickle's opcodes without building anything (see the comment
    above ``BUILD_FLOOR``); charges ``budget`` with what loading it costs."""
    if plain_cost is not None:
        cost = plain_cost(data, budget.limit - budget.spent)
        if cost is not None:
            budget.spent += cost
            return
    n = len(data)
    unpack = struct.unpack_from
    stack: list = []
    marks: List[int] = []
    memo: list = []         # facts by index; _UNSET where nothing was stored
    stored = 0              # values stored in the memo (its next MEMOIZE index)
    limit = budget.limit - budget.spent
    # The C unpickler copies each frame it reads.
    cost = n
    pos = 0
    ops = 0

    def short(size: int, what: str) -> pickle.UnpicklingError:
        return _refused("%s at byte %d claims %d bytes, but only %d follow (truncated or "
                        "hostile)" % (what, pos, size, n - pos))

    def pop_mark() -> list:
        if not marks:
            raise _refused("%s at byte %d without a MARK" % (_op_name(code), pos))
        at = marks.pop()
        items = stack[at:]
        del stack[at:]
        return items

    def need(k: int) -> None:
        if len(stack) - (marks[-1] if marks else 0) < k:
            raise _refused("%s at byte %d needs %d item(s) on the stack"
                           % (_op_name(code), pos, k))

    def changeable(target: Any) -> None:
        if isinstance(target, _Global):
            raise _refused("%s at byte %d would change %s.%s; globals may only be called"
                           % (_op_name(code), pos, target.module, target.name))

    def memo_put(index: int) -> None:
        nonlocal stored, cost
        if index >= len(memo):
            if index > stored + MAX_MEMO:
                raise _refused("memo index %d at byte %d, with %d values stored (at most %d "
                               "past that)" % (index, pos, stored, MAX_MEMO))
            # The C unpickler's table: 8 bytes an index, doubled when it grows.
            cost += 16 * (index + 1 - len(memo))
            memo.extend([_UNSET] * (index + 1 - len(memo)))
        if memo[index] is _UNSET:
            stored += 1
        memo[index] = stack[-1]

    def memo_get(index: int) -> None:
        fact = memo[index] if index < len(memo) else _UNSET
        if fact is _UNSET:
            raise _refused("memo index %d at byte %d was never stored" % (index, pos))
        stack.append(fact)

    def text(start: int, size: int) -> Any:
        """A short string's value (a global's name, a constructor's argument)."""
        if size > 64:
            return _ANY
        try:
            return data[start:start + size].decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise _refused("a string at byte %d is not UTF-8" % start) from None

    def str_cost(start: int, size: int) -> int:
        chunk = data[start:start + size]
        if chunk.isascii():
            return 64 + size
        try:
            return 24 + sys.getsizeof(chunk.decode("utf-8", "surrogatepass"))
        except UnicodeDecodeError:
            raise _refused("a string at byte %d is not UTF-8" % start) from None

    def call(callee: Any, args: Any) -> Any:
        """REDUCE: the result's fact; checks known arguments of allowed classes."""
        if not isinstance(callee, _Global):
            raise _refused("REDUCE at byte %d calls %s, not an allowed class"
                           % (pos, callee.what if isinstance(callee, _Sym) else "a value"))
        key = (callee.module, callee.name)
        check = _CONSTRUCTORS.get(key)
        if check is not None and type(args) is tuple:
            extra = check(args)
            if cost + extra > limit:
                raise budget.over("%s at byte %d" % (_show(callee.name, args), pos),
                                  budget.spent + cost + extra)
        if key == ("builtins", "range") and type(args) is tuple:
            try:
                return range(*args)
            except (TypeError, ValueError, OverflowError):
                return _ANY
        if key == ("collections", "OrderedDict"):
            return _ODICT
        if key == ("collections", "deque"):
            return _DEQUE
        return _ANY

    code = 0
    while True:
        if pos >= n:
            raise _refused("the pickle ends without STOP (truncated)")
        code = data[pos]
        pos += 1
        ops += 1
        if ops > MAX_OPCODES:
            raise _refused("more than %d opcodes" % MAX_OPCODES)
        if cost > limit:
            raise budget.over("the pickle up to byte %d" % pos, budget.spent + cost)

        if code == 0x4b:                                    # BININT1
            if pos + 1 > n:
                raise short(1, "BININT1")
            stack.append(data[pos])
            pos += 1
            cost += 8
        elif code == 0x94:                                  # MEMOIZE
            need(1)
            memo_put(stored)
        elif code == 0x8c or code == 0x58 or code == 0x8d:  # (SHORT_)BINUNICODE(8)
            width = 1 if code == 0x8c else 4 if code == 0x58 else 8
            if pos + width > n:
                raise short(width, _op_name(code))
            size = data[pos] if width == 1 else unpack("<I" if width == 4 else "<Q", data,
                                                       pos)[0]
            pos += width
            if size > n - pos:
                raise short(size, _op_name(code))
            stack.append(text(pos, size))
            cost += str_cost(pos, size)
            pos += size
        elif code == 0x68 or code == 0x6a:                  # BINGET, LONG_BINGET
            if code == 0x68:
                if pos + 1 > n:
                    raise short(1, "BINGET")
                index = data[pos]
                pos += 1
            else:
                if pos + 4 > n:
                    raise short(4, "LONG_BINGET")
                index = unpack("<I", data, pos)[0]
                pos += 4
            memo_get(index)
            cost += 8
        elif code == 0x71 or code == 0x72:                  # BINPUT, LONG_BINPUT
            if code == 0x71:
                if pos + 1 > n:
                    raise short(1, "BINPUT")
                index = data[pos]
                pos += 1
            else:
                if pos + 4 > n:
                    raise short(4, "LONG_BINPUT")
                index = unpack("<I", data, pos)[0]
                pos += 4
            need(1)
            memo_put(index)
        elif code == 0x28:                                  # MARK
            marks.append(len(stack))
            if len(marks) > MAX_MARKS:
                raise _refused("MARKs nested more than %d deep" % MAX_MARKS)
            cost += 16
        elif code == 0x65:                                  # APPENDS
            items = pop_mark()
            need(1)
            changeable(stack[-1])
            cost += 16 * len(items)
        elif code == 0x61:                                  # APPEND
            need(2)
            stack.pop()
            changeable(stack[-1])
            cost += 16
        elif code == 0x75:                                  # SETITEMS
            items = pop_mark()
            need(1)
            changeable(stack[-1])
            cost += (128 if stack[-1] is _ODICT else 64) * (len(items) // 2 + 1)
        elif code == 0x73:                                  # SETITEM
            need(3)
            del stack[-2:]
            changeable(stack[-1])
            cost += 128 if stack[-1] is _ODICT else 64
        elif code == 0x90:                                  # ADDITEMS
            items = pop_mark()
            need(1)
            changeable(stack[-1])
            cost += 64 * len(items)
        elif code in (0x4a, 0x4d):                          # BININT, BININT2
            width = 4 if code == 0x4a else 2
            if pos + width > n:
                raise short(width, _op_name(code))
            value = unpack("<i" if width == 4 else "<H", data, pos)[0]
            pos += width
            stack.append(value)
            cost += 8 if -5 <= value <= 256 else 40
        elif code == 0x8a or code == 0x8b:                  # LONG1, LONG4
            width = 1 if code == 0x8a else 4
            if pos + width > n:
                raise short(width, _op_name(code))
            size = data[pos] if width == 1 else unpack("<i", data, pos)[0]
            pos += width
            if size < 0 or size > MAX_LONG_BYTES:
                raise _refused("%s at byte %d of %d bytes (at most %d)"
                               % (_op_name(code), pos, size, MAX_LONG_BYTES))
            if size > n - pos:
                raise short(size, _op_name(code))
            stack.append(int.from_bytes(data[pos:pos + size], "little", signed=True))
            pos += size
            cost += 40 + size
        elif code == 0x47:                                  # BINFLOAT
            if pos + 8 > n:
                raise short(8, "BINFLOAT")
            stack.append(unpack(">d", data, pos)[0])
            pos += 8
            cost += 32
        elif code == 0x43 or code == 0x42 or code == 0x8e or code == 0x96:
            # SHORT_BINBYTES, BINBYTES, BINBYTES8, BYTEARRAY8
            width = 1 if code == 0x43 else 4 if code == 0x42 else 8
            if pos + width > n:
                raise short(width, _op_name(code))
            size = data[pos] if width == 1 else unpack("<I" if width == 4 else "<Q", data,
                                                       pos)[0]
            pos += width
            if size > n - pos:
                raise short(size, _op_name(code))
            pos += size
            stack.append(_ANY)
            cost += 80 + size
        elif code == 0x85 or code == 0x86 or code == 0x87:  # TUPLE1, TUPLE2, TUPLE3
            k = code - 0x84
            need(k)
            items = stack[-k:]
            del stack[-k:]
            stack.append(tuple(items) if all(type(i) in _KNOWN for i in items) else _ANY)
            cost += 64 + 8 * k
        elif code == 0x74:                                  # TUPLE
            items = pop_mark()
            stack.append(tuple(items) if all(type(i) in _KNOWN for i in items) else _ANY)
            cost += 64 + 8 * len(items)
        elif code == 0x29:                                  # EMPTY_TUPLE
            stack.append(())
            cost += 8
        elif code == 0x5d:                                  # EMPTY_LIST
            stack.append(_ANY)
            cost += 80
        elif code == 0x7d:                                  # EMPTY_DICT
            stack.append(_ANY)
            cost += 88
        elif code == 0x8f:                                  # EMPTY_SET
            stack.append(_ANY)
            cost += 240
        elif code == 0x6c:                                  # LIST
            items = pop_mark()
            stack.append(_ANY)
            cost += 80 + 16 * len(items)
        elif code == 0x64:                                  # DICT
            items = pop_mark()
            stack.append(_ANY)
            cost += 88 + 64 * (len(items) // 2 + 1)
        elif code == 0x91:                                  # FROZENSET
            items = pop_mark()
            stack.append(_ANY)
            cost += 240 + 64 * len(items)
        elif code == 0x4e:                                  # NONE
            stack.append(None)
            cost += 8
        elif code == 0x88 or code == 0x89:                  # NEWTRUE, NEWFALSE
            stack.append(code == 0x88)
            cost += 8
        elif code == 0x93:                                  # STACK_GLOBAL
            need(2)
            module, name = stack[-2], stack[-1]
            del stack[-2:]
            if type(module) is not str or type(name) is not str:
                raise _refused("STACK_GLOBAL at byte %d without a short module and name" % pos)
            if (module, name) not in ALLOWED:
                raise _refused_global(module, name)
            stack.append(_Global(module, name))
            cost += 8
        elif code == 0x63:                                  # GLOBAL
            end = data.find(b"\n", pos)
            end2 = data.find(b"\n", end + 1) if end >= 0 else -1
            if end2 < 0:
                raise _refused("GLOBAL at byte %d (truncated)" % pos)
            try:
                module = data[pos:end].decode("utf-8")
                name = data[end + 1:end2].decode("utf-8")
            except UnicodeDecodeError:
                raise _refused("GLOBAL at byte %d is not UTF-8" % pos) from None
            pos = end2 + 1
            if (module, name) not in ALLOWED:
                raise _refused_global(module, name)
            stack.append(_Global(module, name))
            cost += 8
        elif code == 0x52:                                  # REDUCE
            need(2)
            callee, args = stack[-2], stack[-1]
            del stack[-2:]
            stack.append(call(callee, args))
            cost += 128
        elif code == 0x81 or code == 0x92:                  # NEWOBJ, NEWOBJ_EX
            k = 2 if code == 0x81 else 3
            need(k)
            cls = stack[-k]
            del stack[-k:]
            if not isinstance(cls, _Global):
                raise _refused("%s at byte %d of something that is not an allowed class"
                               % (_op_name(code), pos))
            if (cls.module, cls.name) in _CONSTRUCTORS:
                raise _refused("%s at byte %d of %s.%s, which may only be called (REDUCE)"
                               % (_op_name(code), pos, cls.module, cls.name))
            stack.append(_ANY)
            cost += 128
        elif code == 0x62:                                  # BUILD
            need(2)
            stack.pop()
            changeable(stack[-1])
        elif code == 0x30:                                  # POP
            if marks and marks[-1] == len(stack):
                marks.pop()
            else:
                need(1)
                stack.pop()
        elif code == 0x31:                                  # POP_MARK
            pop_mark()
        elif code == 0x32:                                  # DUP
            need(1)
            stack.append(stack[-1])
            cost += 8
        elif code == 0x80:                                  # PROTO
            if pos + 1 > n:
                raise short(1, "PROTO")
            if data[pos] > pickle.HIGHEST_PROTOCOL or data[pos] > 5:
                raise _refused("pickle protocol %d (central reads 5 and older)" % data[pos])
            pos += 1
        elif code == 0x95:                                  # FRAME
            if pos + 8 > n:
                raise short(8, "FRAME")
            size = unpack("<Q", data, pos)[0]
            pos += 8
            if size > n - pos:
                raise short(size, "FRAME")
        elif code == 0x2e:                                  # STOP
            if len(stack) - (marks[-1] if marks else 0) < 1:
                raise _refused("STOP at byte %d with nothing to return" % pos)
            if pos != n:
                raise _refused("%d bytes of data after the end of the pickle" % (n - pos))
            break
        elif code in _REFUSED_OPS:
            raise _refused("opcode %s at byte %d (%s) is not accepted: plugins send "
                           "pickle.dumps' protocol %d" % (_op_name(code), pos - 1,
                                                          _REFUSED_OPS[code], PROTOCOL))
        else:
            raise _refused("%s at byte %d is not a pickle opcode central reads"
                           % (_op_name(code), pos - 1))
    if cost > limit:
        raise budget.over("the pickle", budget.spent + cost)
    budget.spent += cost


_LENGTH = struct.Struct(">I")
_HEAD = struct.Struct(">cQ")


def _head(kind: bytes, call_id: int) -> bytes:
    return _HEAD.pack(kind, call_id)


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
    if len(body) > MAX_RESULT:
        # A reply must fit in one frame: cut what can be long. JSON writes a
        # character in at most 12 bytes, so the cut texts fit.
        info.pop("args", None)
        for key in ("message", "traceback"):
            text = info[key]
            if len(text) > _ERROR_TEXT:
                info[key] = text[:_ERROR_TEXT] + "\n... (%d characters cut)" % (
                    len(text) - _ERROR_TEXT)
        body = json.dumps(info)
    return _head(b"R", call_id) + b"\x01" + body.encode()


#: Characters of an error's message or traceback kept when its reply would
#: not fit otherwise.
_ERROR_TEXT = 64 * 1024


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
        path, args, kwargs = restricted_loads(payload[9:])
        if not isinstance(path, str) or not isinstance(args, tuple) or not isinstance(kwargs, dict):
            raise TypeError("a call is (path, args, kwargs)")
    except Exception as e:  # noqa: BLE001 - the caller gets the reason
        return _error(call_id, type(e).__name__, str(e), "")
    return answer(core, call_id, path, args, kwargs)


def answer(core: Any, call_id: int, path: str, args: tuple, kwargs: dict) -> bytes:
    """Runs a call that was read and checked (by ``serve``, or by central's
    fast path for plain data, ``Answerer`` in ``aigis-central/src/core.rs``) and frames
    its reply."""
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
    if len(body) > MAX_RESULT:
        message = ("the result of aigis.%s is %d bytes pickled; at most %d may cross back to "
                   "the plugin" % (path, len(body), MAX_RESULT))
        return _error(call_id, "ValueError", message, "", ValueError(message))
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


class FrameSocket:
    """Length-prefixed frames over a stream socket, both ways, in as few
    system calls as a ping-pong allows: a small frame goes out in one
    ``send``; a reader waits with ``poll`` for input, then takes what is
    there in one ``recv`` (a reply's length and body together).

    Waiting with ``poll`` for input only matters: a thread blocked in
    ``recv`` is also woken whenever the other end reads what this end sent
    (the kernel wakes a socket's waiters when its send buffer frees), once
    more per call. The socket is non-blocking; ``send`` waits for room with
    ``poll`` too.

    A frame longer than ``CHUNK`` is read straight into a buffer of its own
    (a large reply is not copied again for every piece the socket hands
    over, nor once more at the end). A frame is a bytearray.

    What a read has got so far is kept here, not in the reading call, so an
    exception while it waits in the middle of a frame (Ctrl-C in ``aigis
    shell`` while a large reply arrives) leaves the stream where it was: the
    next reader goes on from there. ``ConnectionError`` once the peer has
    closed. One thread reads at a time (``Link`` sees to it); any thread
    may send."""

    CHUNK = 64 * 1024

    def __init__(self, sock: Any) -> None:
        sock.setblocking(False)
        self._sock = sock
        self._input = select.poll()
        self._input.register(sock.fileno(), select.POLLIN)
        self._output = select.poll()
        self._output.register(sock.fileno(), select.POLLOUT)
        self._write = threading.Lock()
        self._chunk = bytearray(self.CHUNK)
        self._chunk_view = memoryview(self._chunk)  # never resized
        self._pending = bytearray()              # read past the last frame taken
        self._large: Optional[bytearray] = None  # a long frame, filled in place
        self._got = 0                            # how much of it
        self._spare: Optional[bytearray] = None  # a long frame given back

    def send(self, frame: bytes) -> None:
        # The agent skips a longer frame; proxy calls check their size
        # first and say what was too big.
        if len(frame) > MAX_PAYLOAD:
            raise ValueError("a frame of %d bytes; at most %d may cross to central"
                             % (len(frame), MAX_PAYLOAD))
        head = _LENGTH.pack(len(frame))
        with self._write:
            if len(frame) <= self.CHUNK:
                data = head + frame
                try:
                    sent = self._sock.send(data)
                except BlockingIOError:
                    sent = 0
                if sent < len(data):
                    self._send_all(data, sent)
            else:  # not copied to put the length in front
                self._send_all(head)
                self._send_all(frame)

    def _send_all(self, data: bytes, sent: int = 0) -> None:
        view = memoryview(data)[sent:]
        while view:
            try:
                view = view[self._sock.send(view):]
            except BlockingIOError:
                self._output.poll()

    def next(self) -> bytearray:
        while True:
            frame = self._take()
            if frame is not None:
                return frame
            self._input.poll()
            if self._large is not None:
                target = memoryview(self._large)[self._got:]
            else:
                target = self._chunk_view
            try:
                k = self._sock.recv_into(target)
            except BlockingIOError:
                continue
            if not k:
                raise ConnectionError("the other end closed the connection")
            if self._large is not None:
                self._got += k
            elif not self._pending and k >= 4:
                # The common case: one whole frame, taken from the chunk
                # without passing through ``_pending``.
                end = 4 + _LENGTH.unpack_from(target)[0]
                if end <= k:
                    if end < k:
                        self._pending += target[end:k]
                    return self._chunk[4:end]
                self._pending += target[:k]
            else:
                self._pending += target[:k]

    def recycle(self, frame: bytearray) -> None:
        """Takes back a long frame nothing refers to any more, so that the
        next one is read into memory already mapped: a fresh megabyte costs
        its zeroing and a page fault for every 4 KiB, and the C library
        gives it back to the system when it is freed."""
        if len(frame) > self.CHUNK:
            self._spare = frame

    def _buffer(self, size: int) -> bytearray:
        spare, self._spare = self._spare, None
        if spare is not None and len(spare) // 2 < size <= len(spare):
            del spare[size:]  # keeps its memory: it shrinks by less than half
            return spare
        return bytearray(size)

    def _take(self) -> Optional[bytearray]:
        """The next whole frame, if it is here; starts a long one's buffer."""
        if self._large is not None:
            if self._got < len(self._large):
                return None
            frame, self._large = self._large, None
            return frame
        pending = self._pending
        if len(pending) < 4:
            return None
        end = 4 + _LENGTH.unpack_from(pending)[0]
        if len(pending) >= end:
            frame = pending[4:end]
            del pending[:end]
            return frame
        if end - 4 > self.CHUNK:
            self._large = self._buffer(end - 4)
            self._got = len(pending) - 4
            self._large[:self._got] = pending[4:]
            self._pending = bytearray()
        return None


class _Slot:
    """One call waiting for its reply. ``ready`` is made only when its
    thread has to wait for another to read (under the link's lock, as is
    ``reply``): a caller that reads its own reply never needs one."""

    __slots__ = ("ready", "reply")

    def __init__(self) -> None:
        self.ready: Optional[threading.Event] = None
        self.reply: Optional[bytes] = None


def reply_id(frame: bytes) -> int:
    """The call id a reply frame answers: a proxy reply (``b"R" + id``) or
    a JSON control reply (``{"id": ...}``); 0 for anything else."""
    if frame[:1] == b"R" and len(frame) >= 9:
        return _HEAD.unpack_from(frame)[1]
    if frame[:1] == b"{":
        try:
            return int(json.loads(frame.decode("utf-8", "replace")).get("id", 0))
        except (ValueError, TypeError, AttributeError):
            return 0
    return 0


#: Why a call fails whose link dropped while it was in flight (the agent's
#: desk says the same of the calls it relays).
DROPPED_IN_FLIGHT = ("the link to central dropped while this call was in flight; it may or "
                     "may not have run")


class LinkClosed(ConnectionError):
    """The link was closed before the call went out: it did not run."""


class Link:
    """Multiplexes calls over one transport: many threads, one reader.

    ``send(frame)`` writes a frame. With ``receive`` (a function that
    blocks until the next reply frame arrives, and raises once the
    transport is gone), a caller reads the transport itself while no other
    thread does, so a sequential caller gets its reply without a hand-off
    between threads; replies for other callers are handed to them, and
    when the reader is done another waiting caller takes over. Without
    ``receive``, the owner feeds every reply frame to ``deliver``. Each
    caller waits only for its own id. ``recycle(frame)``, when given, takes
    back a proxy reply's frame once its result is unpickled.
    """

    def __init__(self, send: Callable[[bytes], None],
                 receive: Optional[Callable[[], bytes]] = None,
                 recycle: Optional[Callable[[bytearray], None]] = None) -> None:
        self._send = send
        self._receive = receive
        self._recycle = recycle
        self._lock = threading.Lock()
        self._reading = threading.Lock()
        self._ids = itertools.count(1)
        self._waiting: Dict[int, _Slot] = {}
        self._closed: Optional[str] = None

    def next_id(self) -> int:
        return next(self._ids)  # atomic: count() is one C call

    def request(self, call_id: int, frame: bytes) -> bytes:
        if self._receive is not None and self._reading.acquire(blocking=False):
            return self._exchange(call_id, frame)
        slot = _Slot()
        if self._receive is None:
            slot.ready = threading.Event()  # the owner delivers from its thread
        with self._lock:
            if self._closed:
                raise LinkClosed(self._closed)
            self._waiting[call_id] = slot
        try:
            self._send_whole(frame)
            if slot.ready is not None:
                slot.ready.wait()
            else:
                self._wait_reading(slot)
        except BaseException:
            # Not sent, or interrupted (Ctrl-C): a reply, if one comes, is dropped.
            with self._lock:
                self._waiting.pop(call_id, None)
            raise
        if slot.reply is None:
            raise ConnectionError(self._closed or "the link to central closed")
        return slot.reply

    def _exchange(self, call_id: int, frame: bytes) -> bytes:
        """A call made while nobody reads (``_reading`` is held): sent, then
        the transport read here until its reply, other callers' replies
        handed to them on the way. What most calls are: the caller needs no
        slot of its own, nor a hand-off."""
        assert self._receive is not None
        try:
            if self._closed:
                raise LinkClosed(self._closed)
            self._send_whole(frame)
            while True:
                try:
                    reply = self._receive()
                except Exception as e:  # noqa: BLE001 - every caller learns why
                    self.close("the link to central closed: %s" % e)
                    raise ConnectionError(self._closed) from e
                got = reply_id(reply)
                if got == call_id:
                    return reply
                self.deliver(got, reply)
        finally:
            self._reading.release()
            self._hand_over()

    def _send_whole(self, frame: bytes) -> None:
        """Sends ``frame``; ``LinkClosed`` when it did not go out whole (the
        other end cannot have run it)."""
        try:
            self._send(frame)
        except OSError as e:
            raise LinkClosed("the link to central closed: %s" % e) from e

    def _wait_reading(self, slot: _Slot) -> None:
        """Waits for ``slot``, reading the transport whenever nobody else is."""
        assert self._receive is not None
        while slot.reply is None and not self._closed:
            if self._reading.acquire(blocking=False):
                try:
                    while slot.reply is None and not self._closed:
                        try:
                            reply = self._receive()
                        except Exception as e:  # noqa: BLE001 - every caller learns why
                            self.close("the link to central closed: %s" % e)
                            break
                        self.deliver(reply_id(reply), reply)
                finally:
                    self._reading.release()
                    self._hand_over()
                continue
            with self._lock:
                if slot.reply is not None or self._closed:
                    break
                if slot.ready is None:
                    # Made before trying the turn again: a reader that lets
                    # go after this point wakes it (see _hand_over).
                    slot.ready = threading.Event()
                    continue
                ready = slot.ready
            # Woken by our reply, or because the reader stopped reading.
            ready.wait()
            ready.clear()

    def _hand_over(self) -> None:
        """Wakes one caller still waiting, to read in our place. Nobody is
        waiting when ``_waiting`` is empty: a caller is in it before it
        first tries to read, and tries again after making its Event."""
        if not self._waiting:
            return
        with self._lock:
            other = next((s.ready for s in self._waiting.values() if s.ready is not None), None)
        if other is not None:
            other.set()

    def deliver(self, call_id: int, reply: bytes) -> None:
        with self._lock:
            slot = self._waiting.pop(call_id, None)
            if slot is None:
                return
            slot.reply = reply
            ready = slot.ready
        if ready is not None:
            ready.set()

    def close(self, reason: str) -> None:
        with self._lock:
            self._closed = reason
            waiting, self._waiting = self._waiting, {}
        for slot in waiting.values():
            if slot.ready is not None:
                slot.ready.set()

    def call(self, path: str, args: tuple, kwargs: dict) -> Any:
        body = pickle.dumps((path, args, kwargs), protocol=PROTOCOL)
        if len(body) > MAX_CALL:
            raise ValueError("the call's arguments are %d bytes pickled; at most %d may cross "
                             "to central" % (len(body), MAX_CALL))
        call_id = next(self._ids)
        reply = self.request(call_id, _HEAD.pack(b"C", call_id) + body)
        if reply[9:10] == b"\x00":
            with memoryview(reply) as view:
                result = pickle.loads(view[10:])
            if self._recycle is not None:
                self._recycle(reply)  # the result holds no part of it
            return result
        info = json.loads(reply[10:].decode("utf-8", "replace"))
        raise remote_exception(info.get("type", "Exception"), info.get("message", ""),
                               info.get("traceback", ""), info.get("args"), info.get("builtin"))


class DirectCalls:
    """A plugin's proxy calls, straight to central when it can (see
    ``aigis-agent/src/direct.rs``): over a connection sshd makes to the
    plugin's own listening socket once central opens its channel, else over
    ``fallback``, the link through the agent.

    The calling thread looks for that connection itself (at most every
    ``LOOK_EVERY`` seconds while there is none), and takes it only when
    central's token is its first frame. When it closes (the SSH connection
    dropped), the calls in flight on it fail, as they would through the
    agent; a call that had not gone out yet goes through the agent."""

    LOOK_EVERY = 0.05
    #: How long central's token may take to follow the connection.
    TOKEN_WAIT = 2.0

    def __init__(self, listener: Any, token: str, fallback: Link) -> None:
        listener.setblocking(False)
        self._listener = listener
        self._token = token.encode()
        self._fallback = fallback
        self._direct: Optional[Link] = None
        self._conn: Any = None  # the socket under _direct
        self._next_look = 0.0
        self._looking = threading.Lock()

    def call(self, path: str, args: tuple, kwargs: dict) -> Any:
        link = self._direct or self._look()
        if link is None:
            return self._fallback.call(path, args, kwargs)
        try:
            return link.call(path, args, kwargs)
        except LinkClosed:
            self._drop(link)
            return self._fallback.call(path, args, kwargs)
        except ConnectionError as e:
            self._drop(link)
            raise ConnectionError(DROPPED_IN_FLIGHT) from e

    def next_id(self) -> int:
        return self._fallback.next_id()

    def request(self, call_id: int, frame: bytes) -> bytes:
        """Control requests go through the agent."""
        return self._fallback.request(call_id, frame)

    def _drop(self, link: Link) -> None:
        with self._looking:
            if self._direct is not link:
                return
            self._direct, conn = None, self._conn
        link.close("the direct link to central closed")
        try:
            conn.shutdown(socket.SHUT_RDWR)  # wakes a thread still waiting on it
        except OSError:
            pass
        conn.close()

    def _look(self) -> Optional[Link]:
        now = time.monotonic()
        if now < self._next_look or not self._looking.acquire(blocking=False):
            return None
        try:
            self._next_look = now + self.LOOK_EVERY
            while self._direct is None:
                try:
                    conn, _ = self._listener.accept()
                except OSError:  # nothing waiting, or the listener is gone
                    break
                if self._is_central(conn):
                    frames = FrameSocket(conn)
                    self._conn = conn
                    self._direct = Link(frames.send, frames.next, frames.recycle)
                else:
                    conn.close()
            return self._direct
        finally:
            self._looking.release()

    def _is_central(self, conn: Any) -> bool:
        import hmac
        want = _LENGTH.pack(len(self._token)) + self._token
        got = b""
        conn.settimeout(self.TOKEN_WAIT)
        try:
            while len(got) < len(want):
                piece = conn.recv(len(want) - len(got))
                if not piece:
                    return False
                got += piece
        except OSError:
            return False
        return hmac.compare_digest(got, want)


#: Sub-paths a path keeps as attributes, so ``aigis.a.b`` is a plain
#: attribute lookup after its first use; past this many, new ones are built
#: on every use.
_KEPT_PATHS = 256


def _sub_path(kept: Dict[str, Any], link: Link, path: str, name: str) -> "_Path":
    if name.startswith("__"):
        raise AttributeError(name)
    sub = _Path(link, path + name)
    if len(kept) < _KEPT_PATHS:
        kept[name] = sub
    return sub


class _Path:
    def __init__(self, link: Link, path: str) -> None:
        self._link = link
        self._path = path

    def __getattr__(self, name: str) -> "_Path":
        return _sub_path(self.__dict__, self._link, self._path + ".", name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._link.call(self._path, args, kwargs)

    def __repr__(self) -> str:
        return "<AigisProxy aigis.%s>" % self._path


class AigisProxy(types.ModuleType):
    """The ``aigis`` module of a proxied internal plugin: every attribute is
    a path into the real core; everything must be called, constants too.
    ``AIGISReload(name)`` is a control request, answered by the daemon."""

    def __init__(self, link: Any, reload: Optional[Callable[[str], Any]] = None) -> None:
        super().__init__("aigis", "The AIGIS core, reached through central.")
        self.__dict__["_link"] = link
        if reload is not None:
            self.__dict__["AIGISReload"] = reload

    def __getattr__(self, name: str) -> _Path:
        return _sub_path(self.__dict__, self.__dict__["_link"], "", name)
