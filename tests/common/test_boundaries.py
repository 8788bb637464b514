"""Package boundaries the code base keeps (DESIGN.md section 2), checked on the source itself."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def imports(path: Path) -> list[tuple[int, str, list[str]]]:
    """(line, module, names) of every import in ``path``, function-level ones included."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.lineno, node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, alias.name, []) for alias in node.names]
    return found


def sources(*folders: str) -> list[Path]:
    """The code under ``folders``, not the benchmarks' scratch folder (``benchmarks/_work`` holds
    other commits' trees, unpacked to compare with)."""
    return [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))
            if "_work" not in path.relative_to(REPO).parts]


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])  # lavis.models, lavis.datasets, ...


def test_no_private_name_is_imported_from_another_package():
    offenders = []
    for path in sources("lavis", "benchmarks"):
        own = package_of(".".join(path.relative_to(REPO).with_suffix("").parts))
        for line, module, names in imports(path):
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if module.startswith("lavis") and private and package_of(module) != own:
                offenders.append(f"{path.relative_to(REPO)}:{line} imports {private} from {module}")
    assert not offenders, "\n".join(offenders)


LAYER_BLOCK = re.compile(r"<!-- layer order[^>]*-->\s*```text\n(.*?)```", re.S)


def declared_layers() -> dict[str, int]:
    """{unit: layer} from the block in docs/architecture.md (lowest first)."""
    block = LAYER_BLOCK.search((REPO / "docs" / "architecture.md").read_text())
    assert block, "docs/architecture.md has no '<!-- layer order -->' block"
    layers = {}
    for line in block.group(1).strip().splitlines():
        number, *units = line.split()
        layers.update({unit: int(number) for unit in units})
    return layers


def unit_of(module: str) -> str:
    """The unit a module belongs to: ``apps.serve``, ``models``, ``cli``, ``serve`` (a short
    command name), or ``lavis`` (the package face)."""
    parts = module.split(".")[1:]
    if not parts:
        return "lavis"
    return ".".join(parts[:2]) if parts[0] == "apps" and len(parts) > 1 else parts[0]


def module_of(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def lavis_imports() -> list[tuple[str, int, str, str]]:
    """(file, line, importing unit, imported unit) for every import between units in lavis/,
    function-level imports and literal ``importlib.import_module`` names included."""
    found = []
    for path in sources("lavis"):
        own = unit_of(module_of(path))
        for line, target, names in imports(path) + dynamic_imports(path):
            if target == "lavis":  # ``from lavis import models``: the named packages are imported
                targets = [f"lavis.{name}" for name in names] or ["lavis"]
            else:
                targets = [target]
            for name in targets:
                if (name == "lavis" or name.startswith("lavis.")) and unit_of(name) != own:
                    found.append((str(path.relative_to(REPO)), line, own, unit_of(name)))
    return found


def dynamic_imports(path: Path) -> list[tuple[int, str, list[str]]]:
    return [(node.lineno, node.args[0].value, []) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None)) == "import_module"
            and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)]


def test_every_package_has_a_declared_layer():
    layers = declared_layers()
    units = {unit_of(module_of(path)) for path in sources("lavis")}
    assert units - set(layers) == set(), f"place these in docs/architecture.md's layer order: {units - set(layers)}"
    assert set(layers) - units == set(), f"the layer order names packages that do not exist: {set(layers) - units}"


def test_every_import_follows_the_declared_layer_order():
    layers = declared_layers()
    offenders = [f"{file}:{line}: {own} (layer {layers[own]}) imports {target} (layer {layers[target]})"
                 for file, line, own, target in lavis_imports() if layers[target] >= layers[own]]
    assert len(lavis_imports()) > 300, "the import reader found too few imports: it is broken"
    assert not offenders, "imports against the layer order (docs/architecture.md):\n" + "\n".join(offenders)


def package_cycles(edges: set[tuple[str, str]]) -> list[list[str]]:
    """Strongly connected groups of more than one unit (Tarjan)."""
    graph: dict[str, set[str]] = {}
    for a, b in edges:
        graph.setdefault(a, set()).add(b)
        graph.setdefault(b, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in graph[node]:
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while True:
                top = stack.pop()
                group.append(top)
                if top == node:
                    break
            if len(group) > 1:
                cycles.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return cycles


def test_no_package_cycles():
    assert package_cycles({("a", "b"), ("b", "c"), ("c", "a"), ("c", "d")}) == [["a", "b", "c"]]  # the detector
    assert package_cycles({(own, target) for _, _, own, target in lavis_imports()}) == []


def test_every_config_named_in_docs_and_entry_points_exists():
    texts = [*REPO.glob("*.py"), REPO / "README.md", *(REPO / "docs").glob("*.md"), *sources("lavis")]
    named = {match for path in texts for match in re.findall(r"configs/[\w./-]+\.yaml", path.read_text())}
    assert named, "no config paths found: the pattern is wrong"
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert not missing, missing
