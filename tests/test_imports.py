"""The package reads top-down: every module imports on its own, no import cycle (function-level
imports included), and the core (config, engine, diffusion) imports no feature package."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PKG = ROOT / "distill"
FEATURES = ("distill.distillation", "distill.sd", "distill.translate", "distill.gan", "distill.bench",
            "distill.diagnostics", "distill.discriminator", "distill.commands")
CORE = ("distill.config", "distill.errors", "distill.engine", "distill.diffusion")


def _modules():
    for p in sorted(PKG.rglob("*.py")):
        parts = p.relative_to(ROOT).with_suffix("").parts
        yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), p


def _imports(name, path):
    """Every distill module `path` imports, at any depth of its code."""
    pkg = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = pkg.split(".")[: len(pkg.split(".")) - node.level + 1]
                base = ".".join(up + ([base] if base else []))
            if base.startswith("distill"):
                out.add(base)
                out.update(f"{base}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names if a.name.startswith("distill"))
    return out


def _graph():
    mods = dict(_modules())
    return {m: {i for i in _imports(m, p) if i in mods and i != m} for m, p in mods.items()}


def test_no_import_cycle():
    g = _graph()
    # a parent package's __init__ importing its own submodules is not a cycle of concern
    edges = {m: {i for i in deps if not i.startswith(m + ".")} for m, deps in g.items()}
    index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in edges[v]:
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
                sccs.append(sorted(comp))

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            visit(v)
    assert not sccs, f"import cycles: {sccs}"


def test_core_imports_no_feature_package():
    g = _graph()
    bad = [(m, i) for m, deps in g.items() if m.startswith(CORE) for i in deps if i.startswith(FEATURES)]
    assert not bad, bad


def test_every_module_imports_alone():
    """Each module in a clean `distill` namespace (one interpreter; distill.* dropped between imports);
    and `import distill.config` loads no feature package."""
    code = f"""
import importlib, sys
mods = {[m for m, _ in _modules()]!r}
failed = []
for m in mods:
    for k in [k for k in sys.modules if k == "distill" or k.startswith("distill.")]:
        del sys.modules[k]
    try:
        importlib.import_module(m)
    except Exception as e:
        failed.append(f"{{m}}: {{type(e).__name__}}: {{e}}")
for k in [k for k in sys.modules if k == "distill" or k.startswith("distill.")]:
    del sys.modules[k]
import distill.config
loaded = sorted(k for k in sys.modules if k.startswith({FEATURES!r}))
print("FAILED", failed)
print("LOADED", loaded)
assert not failed and not loaded
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
