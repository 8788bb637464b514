"""A version of "the code that computes this", derived from the code itself.

Caches of computed outputs (the feature cache) must not outlive the code that produced them, and a
hand-bumped version number is forgotten. :func:`source_digest` hashes the source files of the
given classes and functions, the modules they rely on inside the named packages (followed through
the names each module imports), and the versions of the third-party packages those modules use
(timm, open_clip, PIL, torch, ...). Editing any of those files, or upgrading such a package,
changes the digest.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import sys
import types
from collections.abc import Iterable, Sequence


@functools.cache
def _distributions() -> dict[str, list[str]]:
    return importlib.metadata.packages_distributions()


def _package_version(top: str) -> str | None:
    for dist in _distributions().get(top, []):
        try:
            return f"{dist}=={importlib.metadata.version(dist)}"
        except importlib.metadata.PackageNotFoundError:
            continue
    version = getattr(sys.modules.get(top), "__version__", None)
    return f"{top}=={version}" if version else None


def _module_of(value: object) -> str | None:
    if isinstance(value, types.ModuleType):
        return value.__name__
    name = getattr(value, "__module__", None)
    return name if isinstance(name, str) else None


def _closure(roots: Iterable[str], follow: Sequence[str]) -> tuple[list[str], set[str]]:
    """(modules inside ``follow`` reachable from ``roots``, top-level third-party packages they use)."""
    seen: list[str] = []
    third_party: set[str] = set()
    stack = list(roots)
    while stack:
        name = stack.pop()
        if name in seen or name not in sys.modules:
            continue
        seen.append(name)
        for value in vars(sys.modules[name]).values():
            used = _module_of(value)
            if used is None:
                continue
            top = used.split(".")[0]
            if _inside(used, follow):
                stack.append(used)
            elif top not in sys.stdlib_module_names and top not in ("lavis", "builtins", "__main__"):
                third_party.add(top)
    return sorted(seen), third_party


def _inside(module: str, packages: Sequence[str]) -> bool:
    return any(module == package or module.startswith(package + ".") for package in packages)


def source_digest(objects: Iterable[object], follow: Sequence[str]) -> str:
    """sha256 over the source of the modules defining ``objects`` (and, for classes, their bases),
    the modules they reach inside the packages ``follow`` (e.g. ``["lavis.models.vision"]``), and
    the versions of the third-party packages all of those use.

    Imports made inside functions are invisible to the module scan: pass the classes an object
    is really built from too (e.g. ``{type(m) for m in encoder.modules()}``, which names timm's or
    open_clip's blocks).
    """
    roots: set[str] = set()
    used: set[str] = set()
    for obj in objects:
        for owner in inspect.getmro(obj) if inspect.isclass(obj) else (obj,):
            module = _module_of(owner)
            if module is None:
                continue
            top = module.split(".")[0]
            if top == "lavis" or _inside(module, follow):
                roots.add(module)
            elif top not in sys.stdlib_module_names and top != "builtins":
                used.add(top)
    modules, third_party = _closure(sorted(roots), [*follow, *sorted(roots)])
    third_party |= used
    sha = hashlib.sha256()
    for name in modules:
        source = inspect.getsourcefile(sys.modules[name])
        sha.update(name.encode() + b"\0")
        if source:
            with open(source, "rb") as handle:
                sha.update(hashlib.sha256(handle.read()).digest())
    for top in sorted(third_party | {"torch"}):
        sha.update(f"{_package_version(top)}\0".encode())
    return sha.hexdigest()
