"""The package's layering (CONTRIBUTING.md, "Layers"): a module imports only from its own layer
or the layers below it, no two modules import each other (directly or round a longer cycle), and
``import kernels`` loads none of the heavy optional libraries.

Imports are read from the source with :mod:`ast`, so imports inside functions (the lazy ones)
count too: a lazy import of a higher layer is still a dependency on it.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "kernels"

#: Lowest first. A module belongs to the layer of the longest prefix that names it; the
#: private top-level modules (``kernels._config``, ``kernels._validate``, ``kernels._simd``, ...)
#: are the core.
LAYERS = [
    ("core", ["kernels._"]),
    ("kernels", ["kernels.conv", "kernels.pool", "kernels.optim"]),
    ("composites", ["kernels.hypergrad", "kernels.arch", "kernels.nn", "kernels.tune", "kernels.dask"]),
    ("public API", ["kernels"]),
    ("references and peers", ["kernels.naive", "kernels.peers", "kernels.catalog"]),
    ("applications", ["kernels.apps", "kernels.__main__"]),
]

HEAVY = ("matplotlib", "hypothesis", "scipy", "torch", "jax", "dask", "sklearn", "optuna", "tqdm")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _layer(module: str) -> int:
    best, best_len = None, -1
    for rank, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            matches = module == prefix or module.startswith(prefix if prefix.endswith("_") else prefix + ".")
            if matches and len(prefix) > best_len:
                best, best_len = rank, len(prefix)
    if best is None:
        raise AssertionError(f"{module} is in no layer: add it to LAYERS here and to CONTRIBUTING.md's diagram")
    return best


def _resolve(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _imports(module: str) -> set[str]:
    """The kernels modules that ``module`` imports, at module level or inside functions."""
    path = MODULES[module]
    tree = ast.parse(path.read_text(), str(path))
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            target = _resolve(module, path.name == "__init__.py", node)
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                found.add(sub if sub in MODULES else target)
    # `import kernels.x.y` names a module; keep the longest existing prefix of each name
    out = set()
    for name in found:
        parts = name.split(".")
        while parts and ".".join(parts) not in MODULES:
            parts.pop()
        if parts and ".".join(parts) != module:
            out.add(".".join(parts))
    return out


GRAPH = {m: _imports(m) for m in MODULES}


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


def test_no_module_imports_a_higher_layer():
    wrong = [
        f"{a} ({LAYERS[_layer(a)][0]}) imports {b} ({LAYERS[_layer(b)][0]})"
        for a, targets in GRAPH.items() for b in sorted(targets) if _layer(b) > _layer(a)
    ]
    assert wrong == []


def _cycles(graph):
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(root):
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            node, edges = work[-1]
            for nxt in edges:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    comp = []
                    while True:
                        m = stack.pop()
                        on.discard(m)
                        comp.append(m)
                        if m == node:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))

    for m in sorted(graph):
        if m not in index:
            visit(m)
    return out


def test_no_two_modules_import_each_other():
    assert _cycles(GRAPH) == []


def test_the_cycle_finder_finds_cycles():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


def test_the_layer_check_sees_a_lazy_upward_import(tmp_path):
    tree = ast.parse("def f():\n    from kernels.apps import hw2\n")
    node = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert _layer(_resolve("kernels.conv", False, node)) > _layer("kernels.conv")


def _heavy_after(statement):
    code = (f"import sys; {statement}; "
            f"print(sorted(m for m in sys.modules if m.split('.')[0] in {HEAVY!r}))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(eval(out))


def test_import_kernels_stays_light():
    """Beyond what numba loads itself (its import checks scipy's version when scipy is
    installed), ``import kernels`` loads nothing of the optional libraries."""
    assert _heavy_after("import kernels") - _heavy_after("import numpy, numba") == set()


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _layer(m) <= 3))
def test_library_modules_never_import_optional_libraries(module):
    """Not even lazily: the library proper runs on numba and numpy alone, except the modules that
    are an extra's own code (:data:`EXTRAS`), each importing that extra's packages and no other
    (``import kernels`` still loads none of them: test above)."""
    allowed = EXTRAS.get(module, set())
    heavy = {name for name in _external(module) if name.split(".")[0] in HEAVY and name.split(".")[0] not in allowed}
    assert heavy == set()


#: setup.cfg's optional extras and the library modules that are their code: the ``nn`` extra's
#: progress bar (tqdm, imported inside ``fit`` when asked for) and the ``dask`` extra's module.
EXTRAS = {"kernels.nn.train": {"tqdm"}, "kernels.dask": {"dask", "distributed"}, "kernels.dask.filters": {"dask", "distributed"},
          "kernels.dask.sweeps": {"dask", "distributed"}, "kernels.dask._workers": {"distributed"}}


def test_only_the_extras_modules_import_an_extra():
    assert set(EXTRAS) <= set(MODULES), "EXTRAS names a module that does not exist"


def _external(module):
    path = MODULES[module]
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and not node.level and node.module:
            names.add(node.module)
    return names
