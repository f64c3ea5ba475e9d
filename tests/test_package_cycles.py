"""deepgal's packages import each other in one direction: no two sub-packages (or top-level
modules) reach each other through their imports, so each one can be read knowing only what
it imports. Imports are read with ``ast`` (function-level ones included), resolved to modules."""

import ast
from pathlib import Path

LIB = Path(__file__).resolve().parents[1] / "deepgal"


def _module(path: Path) -> str:
    parts = list(path.relative_to(LIB.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _room(module: str) -> str:
    """The package-level unit: ``deepgal.plots.gallery`` -> ``deepgal.plots``."""
    return ".".join(module.split(".")[:2])


def _imports(path: Path, module: str, modules: set[str]) -> set[str]:
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(base + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import name`: name is a module when one exists, else pkg is the target
            names = [
                f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names
            ]
        else:
            continue
        out |= {n for n in names if n.startswith("deepgal.") or n == "deepgal"}
    return out


def room_graph() -> dict[str, set[str]]:
    files = {_module(p): p for p in LIB.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for module, path in files.items():
        src = _room(module)
        for target in _imports(path, module, set(files)):
            dst = _room(target)
            if src != dst and "deepgal" not in (src, dst):
                graph.setdefault(src, set()).add(dst)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path that returns to its start, or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt) :] + [nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return None


def test_find_cycle_on_hand_made_graphs():
    assert find_cycle({"a": {"b"}, "b": {"c"}}) is None
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"x": {"y"}, "y": {"y2"}, "y2": {"y"}}) == ["y", "y2", "y"]


def test_the_import_graph_is_read_from_the_sources():
    graph = room_graph()
    # edges every reader of the code knows exist
    assert "deepgal.data" in graph["deepgal.training"]
    assert "deepgal.plots" in graph["deepgal.explore"]


def test_no_two_packages_import_each_other():
    cycle = find_cycle(room_graph())
    assert cycle is None, "packages that import each other: " + " -> ".join(cycle)
