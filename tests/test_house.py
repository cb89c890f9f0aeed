"""The shape of the house: every package imports only packages below it, and frame math is a leaf."""

from __future__ import annotations

import ast
from pathlib import Path

import vj

ROOT = Path(vj.__file__).parent

# Bottom to top. A module may import its own package and anything lower, never higher.
LAYERS = [
    {"vj", "vj.errors", "vj.threads", "vj.tomlfile", "vj.schema", "vj.net", "vj.tempo"},
    {"vj.frame"},
    {"vj.params"},
    {"vj.control"},
    {"vj.layers"},
    {"vj.gen"},
    {"vj.dreams"},
    {"vj.scenes"},
    {"vj.output"},
    {"vj.engine"},
    {"vj.cli", "vj.__main__"},
]


def _unit(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2]) if len(parts) > 1 else module


def _rank(module: str) -> int:
    unit = _unit(module)
    for i, layer in enumerate(LAYERS):
        if unit in layer:
            return i
    raise AssertionError(f"{module} belongs to no layer of the house: add its package to LAYERS")


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        name = ".".join(rel.parts)
        out[name.removesuffix(".__init__")] = path
    return out


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):  # function-level (lazy) imports count too
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return {n for n in names if n == "vj" or n.startswith("vj.")}


def test_every_package_imports_only_packages_below_it() -> None:
    upward = []
    for module, path in sorted(_modules().items()):
        for imported in _imports(path):
            if imported == "vj" or _unit(imported) == _unit(module):
                continue
            if _rank(imported) > _rank(module):
                upward.append(f"{module} imports {imported}")
    assert not upward, "imports that point up the house:\n" + "\n".join(upward)


def test_frame_math_imports_nothing_else_of_vj() -> None:
    leaks = [
        f"{module} imports {imported}"
        for module, path in _modules().items()
        if _unit(module) == "vj.frame"
        for imported in _imports(path)
        if _unit(imported) != "vj.frame"
    ]
    assert not leaks, leaks


def test_the_rule_catches_an_upward_import(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from vj.engine.loop import Show\n")
    assert "vj.engine.loop" in _imports(bad)
    assert _rank("vj.engine.loop") > _rank("vj.gen.base")
