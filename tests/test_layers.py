"""The import direction is strictly downward: CLI → service → run → apply → kinds →
connectors/state/sources → mappings → core → config.

Reads every module's imports (module-level and inside functions) with ``ast`` and checks
that no module imports a layer above its own. The layers are the architecture README's
"What a run does" describes; a new package must be placed here before it can be imported.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("provisioner", "connectors", "mappings", "sources", "demo")

# High to low. A module may import its own layer or any layer below it.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("provisioner.cli", "provisioner.web"),
    ("provisioner.service",),
    ("provisioner.run",),
    ("provisioner.apply",),
    ("provisioner.kinds",),
    ("connectors", "sources", "demo", "provisioner.state", "provisioner.logs"),
    ("mappings",),
    ("provisioner.core",),
    ("provisioner.config", "provisioner.faults", "provisioner"),
)


def layer_of(module: str) -> int:
    """Index of the layer a dotted module name belongs to (the longest prefix wins)."""
    best, best_len = None, -1
    for i, prefixes in enumerate(LAYERS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best_len:
                best, best_len = i, len(p)
    if best is None:
        raise LookupError(f"{module} is in no layer: add it to LAYERS in tests/test_layers.py")
    return best


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) for every import of a project package in the file."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            for a in node.names:
                # "from provisioner.core import plan" imports provisioner.core.plan
                sub = f"{node.module}.{a.name}"
                is_module = (ROOT / Path(*sub.split("."))).with_suffix(".py").exists() or (
                    ROOT / Path(*sub.split("."))
                ).is_dir()
                found.append((node.lineno, sub if is_module else node.module))
    return [(line, m) for line, m in found if m.split(".")[0] in PACKAGES]


def project_modules() -> list[Path]:
    return sorted(p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py") if "migrations" not in p.parts)


def test_every_module_has_a_layer() -> None:
    for path in project_modules():
        layer_of(module_name(path))


def upward_imports(path: Path, me: str) -> list[str]:
    """The imports of module ``me`` (read from ``path``) that point to a higher layer."""
    mine = layer_of(me)
    return [
        f"{me}:{line} imports {m} ({' '.join(LAYERS[layer_of(m)])})"
        for line, m in imports_of(path)
        if layer_of(m) < mine
    ]


@pytest.mark.parametrize("path", project_modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_downward(path: Path) -> None:
    me = module_name(path)
    upward = upward_imports(path, me)
    where = " ".join(LAYERS[layer_of(me)])
    assert not upward, f"{me} is in layer {where}; upward imports:\n" + "\n".join(upward)


def test_the_checker_catches_an_upward_import_even_inside_a_function(tmp_path: Path) -> None:
    probe = tmp_path / "probe.py"
    probe.write_text("def f():\n    from provisioner.run import runner\n    import connectors.base\n")
    assert upward_imports(probe, "provisioner.core.probe") == [
        "provisioner.core.probe:2 imports provisioner.run.runner (provisioner.run)",
        "provisioner.core.probe:3 imports connectors.base"
        " (connectors sources demo provisioner.state provisioner.logs)",
    ]
    assert upward_imports(probe, "provisioner.cli.probe") == []


def import_loops(graph: dict[str, set[str]]) -> list[list[str]]:
    """The sets of modules that import each other in a loop (strongly connected, 2 or more)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    loops: list[list[str]] = []

    def visit(v: str) -> None:  # Tarjan's algorithm; the project's depth is far below the limit
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            loop = []
            while True:
                w = stack.pop()
                on.discard(w)
                loop.append(w)
                if w == v:
                    break
            if len(loop) > 1:
                loops.append(sorted(loop))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return loops


def test_no_modules_import_each_other_in_a_loop() -> None:
    """Within a layer imports must point downward too: a loop (even through an import
    inside a function) means two modules are one job split wrongly, or a shared name
    that belongs below both."""
    paths = {module_name(p): p for p in project_modules()}
    graph = {me: {m for _, m in imports_of(path) if m in paths and m != me} for me, path in paths.items()}
    assert import_loops(graph) == []


def test_the_loop_finder_finds_a_loop_and_only_a_loop() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": set(), "e": {"d"}}
    assert import_loops(graph) == [["a", "b", "c"]]
    assert import_loops({"a": {"b"}, "b": set()}) == []
