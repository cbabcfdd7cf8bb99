"""Benchmark: one trivial skill call, three ways.

1. direct: the function itself.
2. namespace: through an `aigis` namespace built by python/loader.py, as in
   central's embedded core (the logger wrapper is the only extra work).
3. copied core: inside a real internal-local plugin process started the way
   the agent starts it (python3 -u shim.py), calling `aigis.m.add`.

Run: python3 bench/skill_call.py   (prints one JSON line per case)
"""

import json
import os
import subprocess
import sys
import tempfile
import textwrap
import timeit
import types

HERE = os.path.dirname(os.path.abspath(__file__))
PYDIR = os.path.join(HERE, "..", "python")
sys.path.insert(0, PYDIR)
import loader  # noqa: E402

N = 200_000
IMPL = "def add(a, b, logger=None):\n    return a + b\n\ndef plain(a, b):\n    return a + b\n"


def best(stmt, glb):
    times = timeit.repeat(stmt, globals=glb, number=N, repeat=5)
    ns = min(times) / N * 1e9
    return {"ns_per_call": round(ns, 1), "calls_per_s": round(1e9 / ns)}


def make_plugin(root):
    os.makedirs(os.path.join(root, "AIGIS"))
    with open(os.path.join(root, "m_impl.py"), "w") as f:
        f.write(IMPL)
    with open(os.path.join(root, "AIGIS", "AIGIS.core"), "w") as f:
        f.write("import m_impl as m\nSKILLS = ['m.add', 'm.plain']\n")


def main():
    tmp = tempfile.mkdtemp()
    root = os.path.join(tmp, "core")
    make_plugin(root)
    ns = {}
    exec(IMPL, ns)
    results = {"direct": best("add(1, 2)", {"add": ns["add"]})}

    import logging
    aigis = types.ModuleType("aigis")
    core = loader.Core(aigis, lambda p: loader.plugin_logger(p, logging.NullHandler()))
    core.load("m", root, os.path.join(root, "AIGIS", "AIGIS.core"))
    results["central namespace"] = best("aigis.m.add(1, 2)", {"aigis": aigis})
    results["central namespace, skill without logger"] = best("aigis.m.plain(1, 2)", {"aigis": aigis})

    launch = os.path.join(tmp, "main.py")
    with open(launch, "w") as f:
        f.write(textwrap.dedent(f"""
            import json, timeit, aigis
            def launch(log):
                t = min(timeit.repeat("aigis.m.add(1, 2)", globals={{"aigis": aigis}}, number={N}, repeat=5))
                ns = t / {N} * 1e9
                print(json.dumps({{"ns_per_call": round(ns, 1), "calls_per_s": round(1e9 / ns)}}))
        """))
    env = dict(os.environ, AIGIS_PLUGIN="bench", AIGIS_LAUNCH=launch, AIGIS_ENTRYPOINT=tmp,
               AIGIS_CORE_PLUGINS=json.dumps([{"name": "m", "entrypoint": root,
                                               "core_file": os.path.join(root, "AIGIS", "AIGIS.core")}]))
    out = subprocess.run([sys.executable, "-u", os.path.join(PYDIR, "shim.py")], env=env,
                         cwd=tmp, capture_output=True, text=True, check=True)
    results["copied core (internal-local process)"] = json.loads(out.stdout.strip().splitlines()[-1])

    floor = results["direct"]["ns_per_call"]
    for name, r in results.items():
        r["ratio_to_direct"] = round(r["ns_per_call"] / floor, 2)
        print(json.dumps({"case": name, **r}))


if __name__ == "__main__":
    main()
