#!/usr/bin/env python3
"""The shape of the Rust code, as the structural issue measured it:
import circles between the modules of a crate (`crate::x` references,
comments ignored) and the longest functions.

    python3 contrib/code_shape.py aigis-central aigis-agent
"""

import os
import re
import sys


def modules(crate):
    src = os.path.join(crate, "src")
    deps = {}
    for d, _, files in os.walk(src):
        for f in files:
            if not f.endswith(".rs"):
                continue
            path = os.path.join(d, f)
            name = os.path.relpath(path, src)[:-3].replace("/mod", "").split("/")[0]
            if name in ("main", "lib"):
                continue
            code = "\n".join(l for l in open(path) if not l.lstrip().startswith("//"))
            deps.setdefault(name, set()).update(re.findall(r"crate::(\w+)", code))
    return {m: {d for d in ds if d in deps and d != m} for m, ds in deps.items()}


def circles(graph):
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return out


def longest_functions(crates, n=10):
    found = []
    for crate in crates:
        for d, _, files in os.walk(os.path.join(crate, "src")):
            for f in files:
                if not f.endswith(".rs"):
                    continue
                path = os.path.join(d, f)
                lines = open(path).read().split("\n")
                i = 0
                while i < len(lines):
                    m = re.match(r"^(\s*)(pub(\(\w+\))? )?(async )?fn (\w+)", lines[i])
                    if m and not lines[i].rstrip().endswith(";"):
                        indent, j = m.group(1), i + 1
                        while j < len(lines) and lines[j].rstrip() != indent + "}":
                            j += 1
                        found.append((j - i + 1, path, m.group(5)))
                        i = j
                    i += 1
    return sorted(found, reverse=True)[:n]


if __name__ == "__main__":
    crates = sys.argv[1:] or ["aigis-central", "aigis-agent"]
    for crate in crates:
        print(crate, "import circles:", circles(modules(crate)) or "none")
    for length, path, name in longest_functions(crates):
        print(f"{length:4} {path} {name}")
