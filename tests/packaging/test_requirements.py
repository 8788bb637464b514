"""Every pin in requirements.txt earns its place, and setup.py's ranges admit the pinned set."""

from __future__ import annotations

import ast
import importlib.metadata
import re
from pathlib import Path

from packaging.requirements import Requirement
from packaging.version import Version

REPO = Path(__file__).resolve().parents[2]
# Pins used without an import statement of their own (each says why in requirements.txt).
NOT_IMPORTED = {
    "protobuf": "transformers converts sentencepiece tokenizers with it",
    "tensorboard": "imported by torch.utils.tensorboard",
    "openslide-bin": "the C library openslide-python loads",
    "ruff": "run as the lint command",
    "mkdocs": "run as the docs build command",
    "httptools": "uvicorn's HTTP parser, which uvicorn picks when it is installed",
    "uvloop": "uvicorn's event loop, which uvicorn picks when it is installed",
}


def pins() -> dict[str, tuple[str, str]]:
    """{normalised name: (version, comment)} of requirements.txt."""
    out = {}
    for line in (REPO / "requirements.txt").read_text().splitlines():
        spec, _, comment = line.partition("#")
        if spec.strip():
            name, version = spec.split("==")
            out[normalise(name)] = (version.strip(), comment.strip())
    return out


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


def imported_top_level_names() -> set[str]:
    names = set()
    files = [*REPO.glob("*.py"), *(p for d in ("lavis", "tests", "benchmarks") for p in (REPO / d).rglob("*.py"))]
    for path in files:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names |= {alias.name.split(".")[0] for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
    return names


def setup_requirements() -> list[Requirement]:
    """install_requires and every extra, read from setup.py's literals."""
    call = next(
        node for node in ast.walk(ast.parse((REPO / "setup.py").read_text()))
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "setup"
    )
    keywords = {k.arg: ast.literal_eval(k.value) for k in call.keywords if k.arg in ("install_requires", "extras_require")}
    specs = list(keywords["install_requires"]) + [s for extra in keywords["extras_require"].values() for s in extra]
    return [Requirement(spec) for spec in specs]


def test_every_pin_is_imported_or_says_why_not():
    modules_of: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(normalise(dist), set()).add(module)
    used = imported_top_level_names()
    unused = [name for name in pins() if name not in NOT_IMPORTED and not modules_of.get(name, set()) & used]
    assert not unused, f"pinned but imported nowhere in lavis/, tests/, benchmarks/: {unused}"
    for name in NOT_IMPORTED:
        assert name in pins(), f"{name} is no longer pinned: drop it from NOT_IMPORTED"
        assert pins()[name][1], f"requirements.txt must say why {name} is pinned (a comment on its line)"


def test_setup_ranges_admit_the_pinned_versions():
    pinned = pins()
    for requirement in setup_requirements():
        name = normalise(requirement.name)
        assert name in pinned, f"setup.py requires {requirement} but requirements.txt does not pin it"
        version = Version(pinned[name][0])
        assert requirement.specifier.contains(version, prereleases=True), (
            f"setup.py's {requirement} excludes the tested {name}=={version}"
        )
