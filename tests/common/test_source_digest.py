"""source_digest: a version of the code that computes something, derived from that code."""

from __future__ import annotations

import importlib
import sys
import textwrap

import pytest

from lavis.common import source_digest as module
from lavis.common.source_digest import source_digest


@pytest.fixture
def package(tmp_path, monkeypatch):
    """``write(name, source)`` into an importable package ``digestpkg``; ``load(name)`` imports it fresh."""
    root = tmp_path / "digestpkg"
    root.mkdir()
    (root / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))

    def write(name: str, source: str) -> None:
        (root / f"{name}.py").write_text(textwrap.dedent(source))

    def load(name: str):
        for loaded in [m for m in sys.modules if m.startswith("digestpkg")]:
            del sys.modules[loaded]
        importlib.invalidate_caches()
        return importlib.import_module(f"digestpkg.{name}")

    yield write, load
    for loaded in [m for m in sys.modules if m.startswith("digestpkg")]:
        del sys.modules[loaded]


HELPER = "def scale(x):\n    return 2 * x\n"
ENCODER = """
import numpy
from digestpkg.helper import scale

class Encoder:
    def __call__(self, x):
        return scale(x)
"""


def test_editing_the_class_or_a_module_it_uses_changes_the_digest(package):
    write, load = package
    write("helper", HELPER)
    write("encoder", ENCODER)
    first = source_digest([load("encoder").Encoder], follow=["digestpkg"])
    assert source_digest([load("encoder").Encoder], follow=["digestpkg"]) == first  # stable
    write("helper", HELPER.replace("2 * x", "3 * x"))  # a module the class reaches by import
    assert source_digest([load("encoder").Encoder], follow=["digestpkg"]) != first
    write("helper", HELPER)
    write("encoder", ENCODER + "\n# a comment is an edit too\n")
    assert source_digest([load("encoder").Encoder], follow=["digestpkg"]) != first


def test_third_party_versions_are_part_of_it(package, monkeypatch):
    write, load = package
    write("helper", HELPER)
    write("encoder", ENCODER)
    encoder = load("encoder").Encoder
    first = source_digest([encoder], follow=["digestpkg"])
    real = module._package_version
    monkeypatch.setattr(module, "_package_version", lambda top: "numpy==0.0" if top == "numpy" else real(top))
    assert source_digest([encoder], follow=["digestpkg"]) != first


def test_lazily_imported_classes_count_when_passed(package, monkeypatch):
    """Classes a module imports inside functions (timm's blocks in the EVA encoder) are invisible
    to the module scan; passing them adds their package's version."""
    from PIL import Image

    write, load = package
    write("helper", HELPER)
    write("encoder", ENCODER)
    encoder = load("encoder").Encoder
    first = source_digest([encoder, Image.Image], follow=["digestpkg"])
    real = module._package_version
    monkeypatch.setattr(module, "_package_version", lambda top: "pillow==0.0" if top == "PIL" else real(top))
    assert source_digest([encoder], follow=["digestpkg"]) == source_digest([encoder], follow=["digestpkg"])
    assert source_digest([encoder, Image.Image], follow=["digestpkg"]) != first
