"""Referee for config/tests/literal_eval_differential.rs.

Usage: python3 literal_eval_differential.py DIR COUNT

DIR holds N.py (a generated AIGIS.config) and N.ours (what AIGIS's parser
made of it) for N in 0..COUNT. For each file this script decides, the way
AIGIS promises to, whether Python accepts it:

- ast.parse succeeds on the file's bytes (as Python reads a file);
- every top-level statement is either an Expr whose value is a str
  Constant (a docstring or bare string), or an Assign with exactly one Name
  target whose value ast.literal_eval accepts (any exception = refused).

N.ours is "OK" then one "NAME<TAB>REPR" line per assignment, REPR being the
parsed value written as a Python literal, or "ERR <message>". For accepted
files the names must match in order and each REPR, read back with
ast.literal_eval, must equal Python's own value in a strict canonical form
(type and value: True is not 1, 1 is not 1.0, -0.0 is not 0.0; sets
compared as sorted canonical items; dicts in order, after Python's
last-wins).

Prints one JSON object per disagreement, then a JSON summary line.
"""

import ast
import json
import os
import sys
import warnings

# Invalid escapes and such warn; they do not refuse a file.
warnings.simplefilter("ignore")


def canon(v):
    t = type(v)
    if t is bool:
        return "bool:%s" % v
    if v is None:
        return "None"
    if v is Ellipsis:
        return "Ellipsis"
    if t is int:
        return "int:%x" % v  # hex: no 4300-digit conversion limit
    if t is float:
        return "float:" + v.hex()
    if t is complex:
        return "complex:%s,%s" % (v.real.hex(), v.imag.hex())
    if t is str:
        return "str:" + ascii(v)
    if t is bytes:
        return "bytes:" + v.hex()
    if t is tuple:
        return "tuple(" + ",".join(map(canon, v)) + ")"
    if t is list:
        return "list[" + ",".join(map(canon, v)) + "]"
    if t is set:
        return "set{" + ",".join(sorted(map(canon, v))) + "}"
    if t is dict:
        return "dict{" + ",".join(canon(k) + ":" + canon(x) for k, x in v.items()) + "}"
    raise TypeError("unexpected type %r" % t)


def python_verdict(src):
    """(list of (name, canonical value), None) if accepted, else (None, why)."""
    try:
        tree = ast.parse(src)
    except Exception as e:  # SyntaxError, ValueError, RecursionError, MemoryError
        return None, "%s: %s" % (type(e).__name__, e)
    out = []
    for st in tree.body:
        if (
            isinstance(st, ast.Expr)
            and isinstance(st.value, ast.Constant)
            and type(st.value.value) is str
        ):
            continue
        if (
            isinstance(st, ast.Assign)
            and len(st.targets) == 1
            and isinstance(st.targets[0], ast.Name)
        ):
            try:
                value = ast.literal_eval(st.value)
            except Exception as e:
                return None, "line %d: literal_eval: %s: %s" % (
                    st.lineno,
                    type(e).__name__,
                    e,
                )
            out.append((st.targets[0].id, canon(value)))
            continue
        return None, "line %d: a %s statement" % (st.lineno, type(st).__name__)
    return out, None


def our_verdict(text):
    lines = text.split("\n")
    if not lines[0].startswith("OK"):
        return None, lines[0]
    out = []
    for line in lines[1:]:
        if not line:
            continue
        name, _, rep = line.partition("\t")
        try:
            out.append((name, canon(ast.literal_eval(rep))))
        except Exception as e:
            out.append((name, "UNREADABLE %r: %s: %s" % (rep, type(e).__name__, e)))
    return out, None


def main():
    directory, count = sys.argv[1], int(sys.argv[2])
    stats = {"files": count, "both_accept": 0, "both_refuse": 0, "skipped": 0, "non_ascii_names": 0, "disagree": 0}
    for i in range(count):
        with open(os.path.join(directory, "%d.py" % i), "rb") as f:
            src = f.read()
        with open(os.path.join(directory, "%d.ours" % i), encoding="utf-8") as f:
            ours_text = f.read()
        if b"\\N{" in src:
            # The one documented divergence: AIGIS refuses \N{...} escapes.
            stats["skipped"] += 1
            continue
        theirs, why = python_verdict(src)
        ours, our_err = our_verdict(ours_text)
        if (
            theirs is not None
            and ours is None
            and "option names must be ASCII" in our_err
            and not all(name.isascii() for name, _ in theirs)
        ):
            # Documented divergence: AIGIS refuses non-ASCII option names
            # (Python NFKC-normalizes identifiers; AIGIS cannot).
            stats["non_ascii_names"] += 1
            continue
        if theirs is None and ours is None:
            stats["both_refuse"] += 1
            continue
        if theirs is not None and ours is not None and theirs == ours:
            stats["both_accept"] += 1
            continue
        stats["disagree"] += 1
        print(
            json.dumps(
                {
                    "file": i,
                    "ours": our_err if ours is None else ours,
                    "python": why if theirs is None else theirs,
                }
            )
        )
    print(json.dumps({"summary": stats}))


main()
