"""The package's modules import in any order and depend on each other one way only."""

import ast
import pkgutil
import subprocess
import sys

import pytest

import pvt_fpn_d2

from .conftest import REPO, subprocess_env

MODULES = sorted(m.name for m in pkgutil.walk_packages(pvt_fpn_d2.__path__, prefix="pvt_fpn_d2."))


def _imports(module: str):
    """The pvt_fpn_d2 modules that ``module`` imports anywhere in its code (lazy ones too)."""
    path = REPO / (module.replace(".", "/") + ".py")
    if not path.exists():
        path = REPO / module.replace(".", "/") / "__init__.py"
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            for alias in node.names:
                target = f"{base}.{alias.name}" if base else alias.name
                found.add(target if target in MODULES else base)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {m for m in found if m in MODULES and m != module}


def test_no_import_cycles():
    graph = {m: _imports(m) for m in MODULES if not m.endswith("__init__")}
    assert graph["pvt_fpn_d2.modeling.backbone"] >= {
        "pvt_fpn_d2.modeling.variants",
        "pvt_fpn_d2.modeling.weights",
    }
    state = {}

    def visit(m, path):
        if state.get(m) == "done":
            return
        assert state.get(m) != "open", f"import cycle: {' -> '.join(path + [m])}"
        state[m] = "open"
        for dep in sorted(graph.get(m, ())):
            if dep != "pvt_fpn_d2" and not pvt_fpn_d2.__name__ == dep:
                visit(dep, path + [m])
        state[m] = "done"

    for m in graph:
        visit(m, [])


@pytest.mark.parametrize("order", ["alphabetical", "reverse"])
def test_every_module_imports_in_a_fresh_interpreter(order):
    modules = MODULES if order == "alphabetical" else MODULES[::-1]
    code = "import importlib\nfor m in %r:\n    importlib.import_module(m)\n" % modules
    r = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=subprocess_env(), cwd=REPO
    )
    assert r.returncode == 0, r.stderr[-3000:]
