"""The package's shape: layers import downward only, and no module imports itself in a circle.

The layers and what each may import are in docs/architecture.md. This test parses every module
of the source tree (it imports none of them), so it also holds for code no other test runs.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "udpbench"

# Each layer and the layers it may import from (besides itself). Top-level leaf modules
# (errors, files, _version) may be imported from anywhere; the package face (__init__) from nowhere.
ALLOWED = {
    "protocol": set(),
    "engine": {"protocol"},
    "linux": {"protocol"},
    "transport": {"protocol", "engine", "linux"},
    "measure": {"protocol", "engine", "linux", "transport", "output"},
    "output": {"protocol"},
    "lab": {"protocol", "engine", "linux", "transport", "measure", "output"},
    "exporter": {"protocol", "engine", "linux", "transport", "measure", "output"},
    "cli": {"protocol", "engine", "linux", "transport", "measure", "output", "lab", "exporter"},
}
LEAVES = {"errors", "files", "_version"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, as_module: str | None = None) -> set[str]:
    """The udpbench modules ``path`` imports, at any depth of the file (lazy imports count too).

    ``as_module``: read the file as if it were that module (for testing the checker)."""
    tree = ast.parse(path.read_text(), str(path))
    here = (as_module or module_name(path)).split(".")
    package = here if path.name == "__init__.py" else here[:-1]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == "udpbench")
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "udpbench":
                continue
            for alias in node.names:  # `from udpbench.protocol import wire` imports a module
                candidate = f"{mod}.{alias.name}"
                found.add(candidate if _exists(candidate) else mod)
    return found


def _exists(dotted: str) -> bool:
    rel = Path(*dotted.split(".")[1:])
    return (PACKAGE / rel).with_suffix(".py").exists() or (PACKAGE / rel / "__init__.py").exists() \
        or (PACKAGE / rel).with_suffix(".pyx").exists()


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def modules() -> dict[str, set[str]]:
    return {module_name(p): imports_of(p) for p in sorted(PACKAGE.rglob("*.py"))}


def test_every_module_belongs_to_a_layer():
    strays = [m for m in modules() if m != "udpbench" and layer_of(m) not in ALLOWED
              and layer_of(m) not in LEAVES and layer_of(m) != "__main__"]
    assert not strays, f"modules outside every layer: {strays}"


def test_layers_import_downward_only():
    wrong = []
    for module, imported in modules().items():
        layer = layer_of(module)
        if layer not in ALLOWED:
            continue  # the face, __main__ and the leaves
        for target in imported:
            other = layer_of(target)
            if other == "" and target == "udpbench":
                wrong.append(f"{module} imports the package face")
            elif other in LEAVES or other == layer:
                continue
            elif other not in ALLOWED[layer]:
                wrong.append(f"{module} ({layer}) imports {target} ({other or 'face'})")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycles():
    mods = modules()
    graph = {m: {t for t in targets if t in mods and t != m} for m, targets in mods.items()}
    state: dict[str, int] = {}
    cycle: list[str] = []

    def visit(node, path):
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                cycle.extend(path[path.index(nxt):] + [nxt] if nxt in path else [node, nxt])
                return True
            if state.get(nxt) is None and visit(nxt, path + [nxt]):
                return True
        state[node] = 2
        return False

    for start in sorted(graph):
        if state.get(start) is None and visit(start, [start]):
            break
    assert not cycle, " -> ".join(cycle)


def test_the_checker_sees_upward_imports(tmp_path):
    """The parser itself: upward imports, absolute, relative and lazy, written into a file read as
    if it stood in protocol/, are all found and all called wrong."""
    probe = tmp_path / "probe.py"
    probe.write_text("from udpbench.transport import client\n"
                     "from ..measure.sweep import plan\n"
                     "def later():\n    import udpbench.cli.main\n")
    found = imports_of(probe, as_module="udpbench.protocol.probe")
    assert {layer_of(m) for m in found} == {"transport", "measure", "cli"}
    assert not any(layer_of(m) in ALLOWED["protocol"] for m in found)


@pytest.mark.parametrize("layer", sorted(ALLOWED))
def test_layer_is_a_package(layer):
    if not (PACKAGE / layer).exists():
        pytest.skip(f"{layer}/ not written yet")
    assert (PACKAGE / layer / "__init__.py").exists()
