#!/usr/bin/env python3
"""Holds Drift's layering, which the crates make the compiler hold and this check keeps so:

1. Each workspace crate depends (normal dependencies) only on crates in layers below its own,
   so no crate imports up a layer and none is left out of the table below.
2. Within `drift-core`, the modules keep their order (`expr` <- `dsl` <- `engine` <- `domain` <- `session` <- `simulate`).
3. Within each crate, no circle of files: file A uses file B (through `crate::`, `super::` or
   `self::` paths) and B, directly or through others, uses A. A module using its own
   submodules is composition and not counted; unit test modules (`#[cfg(test)] mod …`) are skipped.

Run by the README's test command; prints what is wrong and exits 1.
"""
import json
import os
import re
import subprocess
import sys

# Layer of each crate: a crate may depend only on crates of a lower number.
LAYERS = {
    "drift-core": 0,  # pure: expression language, DSL, interpreter, domain
    "drift-bus": 1,  # adapter: Redis
    "drift-db": 1,  # adapter: the database
    "drift-temporal": 2,  # adapter: Temporal, webhook delivery, egress
    "drift-service": 3,  # service layer: authorise, subscribe, dispatch
    "drift-gateway": 4,  # transports: HTTP, SSE, WebSocket
    "drift-server": 5,  # assembly: gateway + worker, their configuration
    "drift-dev": 6,  # `drift dev`
    "drift-bench": 7,  # `drift bench`
    "drift": 8,  # the binary's command line
}

# Within a crate, top-level modules in layers too: a module may use only those before it.
MODULE_LAYERS = {
    "drift-core": ["expr", "dsl", "engine", "domain", "session", "simulate"],
}

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def crate_problems():
    meta = json.loads(
        subprocess.check_output(
            ["cargo", "metadata", "--format-version", "1", "--no-deps", "--offline"], cwd=ROOT
        )
    )
    problems = []
    for pkg in meta["packages"]:
        name = pkg["name"]
        if name not in LAYERS:
            problems.append(f"crate {name} has no layer in scripts/check-layers.py")
            continue
        for dep in pkg["dependencies"]:
            if dep.get("kind") is not None or dep["name"] not in LAYERS:
                continue
            if LAYERS[dep["name"]] >= LAYERS[name]:
                problems.append(
                    f"crate {name} (layer {LAYERS[name]}) depends on {dep['name']} "
                    f"(layer {LAYERS[dep['name']]}): a crate may use only the layers below it"
                )
    return problems, [(p["name"], os.path.dirname(p["manifest_path"])) for p in meta["packages"]]


def modules(src):
    """Each .rs file under src by its module path (a tuple)."""
    files = {}
    for d, _, fs in os.walk(src):
        for f in fs:
            if not f.endswith(".rs"):
                continue
            rel = os.path.relpath(os.path.join(d, f), src)[:-3].split(os.sep)
            if rel in (["lib"], ["main"]):
                path = ()
            elif rel[-1] == "mod":
                path = tuple(rel[:-1])
            else:
                path = tuple(rel)
            files[path] = os.path.join(d, f)
    return files


PATH = re.compile(r"\b(crate|super|self)((?:::[a-z_][a-z0-9_]*)*)(::\{([^}]*)\})?")


def uses(text, here, files):
    """The module files `text` (the file of module `here`) refers to."""
    text = re.split(r"#\[cfg\(test\)\]\s*mod ", text, maxsplit=1)[0]
    text = re.sub(r"//[^\n]*", "", text)
    found = set()
    for m in PATH.finditer(text):
        head, rest, braces = m.group(1), m.group(2), m.group(4)
        if head == "crate":
            base = ()
        elif head == "self":
            base = here
        else:
            base = here[:-1]
        segs = [s for s in rest.split("::") if s]
        while segs and segs[0] == "super":
            base, segs = base[:-1], segs[1:]
        tails = [segs]
        if braces is not None:
            tails = [segs + re.findall(r"[a-z_][a-z0-9_]*", item.split("::{")[0])[:3] for item in braces.split(",")]
        for tail in tails:
            path = base + tuple(tail)
            while path not in files and path:
                path = path[:-1]
            if path in files:
                found.add(path)
    return found


def circles(src, order):
    files = modules(src)
    graph = {}
    problems = []
    for here, f in files.items():
        refs = uses(open(f, encoding="utf-8").read(), here, files)
        # A module using itself, or its own submodules (composition), is no edge.
        graph[here] = {r for r in refs if r != here and r[: len(here)] != here}
        for r in graph[here]:
            if here and r and here[0] in order and r[0] in order and order.index(r[0]) > order.index(here[0]):
                problems.append(
                    f"{os.path.relpath(f, ROOT)} uses {os.path.relpath(files[r], ROOT)}: "
                    f"`{here[0]}` comes before `{r[0]}` ({' <- '.join(order)})"
                )
    # Tarjan's strongly connected components.
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
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
                out.append(comp)

    sys.setrecursionlimit(10000)
    for v in sorted(graph):
        if v not in index:
            visit(v)
    for comp in out:
        names = sorted(os.path.relpath(files[c], ROOT) for c in comp)
        edges = [
            f"{os.path.relpath(files[a], ROOT)} -> {os.path.relpath(files[b], ROOT)}"
            for a in sorted(comp)
            for b in sorted(graph[a])
            if b in comp
        ]
        problems.append("files in a circle: " + ", ".join(names) + "\n    " + "\n    ".join(edges))
    return problems, len(files)


def main():
    problems, dirs = crate_problems()
    counted = 0
    for name, d in dirs:
        src = os.path.join(d, "src")
        p, n = circles(src, MODULE_LAYERS.get(name, []))
        problems += p
        counted += n
    if problems:
        for p in problems:
            print("check-layers: " + p, file=sys.stderr)
        sys.exit(1)
    print(f"check-layers: {len(dirs)} crates in {len(set(LAYERS.values()))} layers, {counted} files, no circle")


if __name__ == "__main__":
    main()
