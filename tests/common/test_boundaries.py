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
    return [path for folder in folders for path in sorted((REPO / folder).rglob("*.py"))]


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


def test_components_do_not_reach_into_each_others_internals():
    rules = {
        "lavis/common": ("lavis.models", "lavis.datasets", "lavis.processors", "lavis.runners", "lavis.tasks"),
        "lavis/models": ("lavis.processors.", "lavis.datasets", "lavis.runners", "lavis.tasks"),  # lavis.processors API ok
        "lavis/datasets": ("lavis.runners", "lavis.tasks", "lavis.metrics"),
        "lavis/metrics": ("lavis.datasets", "lavis.runners", "lavis.models"),
    }
    offenders = []
    for folder, forbidden in rules.items():
        for path in sources(folder):
            for line, module, _ in imports(path):
                if any(module == f.rstrip(".") and not f.endswith(".") or module.startswith(f.rstrip(".") + ".")
                       for f in forbidden):
                    offenders.append(f"{path.relative_to(REPO)}:{line} imports {module}")
    assert not offenders, "\n".join(offenders)


def test_every_config_named_in_docs_and_entry_points_exists():
    texts = [*REPO.glob("*.py"), REPO / "README.md", *(REPO / "docs").glob("*.md"), *sources("lavis")]
    named = {match for path in texts for match in re.findall(r"configs/[\w./-]+\.yaml", path.read_text())}
    assert named, "no config paths found: the pattern is wrong"
    missing = sorted(path for path in named if not (REPO / path).exists())
    assert not missing, missing
