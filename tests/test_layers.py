"""The layer rule (docs/architecture.md, "Layers"): device_profiles and workloads at the bottom, the simulator
core above them, ports and reports above that, the command line (simulator.cli) on top, imported by nothing.
A package may import only packages strictly below it (and itself); every import counts, lazy ones included."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# package (dotted prefix) -> layer; the longest matching prefix names a module's package
LAYERS = {
    "device_profiles": 0,
    "workloads": 0,
    "simulator": 1,
    "ports": 2,
    "reports": 2,
    "simulator.cli": 3,
}
DEVICE_SIDE = ("ports/micropython", "ports/native")  # code that runs on the boards, not host packages


def package_of(dotted: str) -> str | None:
    """The layered package a dotted module name belongs to (``simulator.cli.plan`` -> ``simulator.cli``)."""
    best = None
    for pkg in LAYERS:
        if (dotted == pkg or dotted.startswith(pkg + ".")) and (best is None or len(pkg) > len(best)):
            best = pkg
    return best


def _imports(tree: ast.AST, module: str) -> list[tuple[int, str]]:
    out = []
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            out += [(n.lineno, a.name) for a in n.names]
        elif isinstance(n, ast.ImportFrom):
            if not n.level:
                out.append((n.lineno, n.module or ""))
                continue
            # relative: resolve against the importing module's package (``a.b.c`` or ``a.b.__init__`` -> a.b)
            base = ".".join(module.split(".")[: -n.level])
            if n.module:
                out.append((n.lineno, f"{base}.{n.module}".strip(".")))
            else:  # ``from .. import x``: each name is a module
                out += [(n.lineno, f"{base}.{a.name}".strip(".")) for a in n.names]
    return out


def layer_violations(root: Path) -> list[str]:
    """Every import in the layered packages under ``root`` that points at a package not strictly below."""
    bad = []
    for top in ("device_profiles", "workloads", "simulator", "ports", "reports"):
        for path in sorted((root / top).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel.startswith(DEVICE_SIDE):
                continue
            module = rel[:-3].replace("/", ".")
            own = package_of(module)
            for line, target in _imports(ast.parse(path.read_text(encoding="utf-8"), rel), module):
                other = package_of(target)
                if other is None or other == own:
                    continue
                if LAYERS[other] >= LAYERS[own]:
                    bad.append(f"{rel}:{line} ({own}, layer {LAYERS[own]}) imports {target} ({other}, layer {LAYERS[other]})")
    return bad


def test_no_upward_or_sideways_imports():
    assert layer_violations(ROOT) == []


@pytest.mark.parametrize("where, planted, expect", [
    ("workloads/planted.py", "import simulator.engine\n", "imports simulator.engine"),          # upward
    ("workloads/planted.py", "from device_profiles import load_profile\n", "device_profiles"),  # sideways
    ("reports/planted.py", "def f():\n    from ports import emulate\n", "imports ports"),        # sideways, lazy
    ("simulator/planted.py", "from simulator.cli import main\n", "imports simulator.cli"),      # core -> CLI
    ("ports/planted.py", "from .. import reports\n", "imports reports"),                         # relative
])
def test_the_check_fails_on_a_planted_import(tmp_path, where, planted, expect):
    for top in ("device_profiles", "workloads", "simulator", "ports", "reports"):
        (tmp_path / top).mkdir()
    (tmp_path / "simulator" / "cli").mkdir()
    (tmp_path / where).write_text(planted)
    found = layer_violations(tmp_path)
    assert len(found) == 1 and expect in found[0], found
