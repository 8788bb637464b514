"""The documentation: README stays a newcomer's page, every relative link resolves, the site builds
strictly, and every quoted figure equals its results file."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
LINK = re.compile(r"\]\((?!https?://|mailto:|#)([^)\s]+)\)")


def test_readme_is_a_short_page():
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


def test_every_relative_link_resolves():
    broken = []
    for page in PAGES:
        prose = re.sub(r"```.*?```|`[^`\n]*`", "", page.read_text(), flags=re.S)  # code is not a link
        for target in LINK.findall(prose):
            path = (page.parent / target.split("#")[0]).resolve()
            if not path.exists():
                broken.append(f"{page.relative_to(REPO)}: {target}")
    assert not broken, broken


def test_the_site_builds_strictly(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site")],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "serving" / "index.html").is_file()


def test_quoted_figures_equal_their_results_files(tmp_path, monkeypatch):
    from benchmarks import quote

    assert quote.quote(write=False) == []
    assert quote.quoted_count() >= 20
    # the check sees a stale figure: a copy of a page with one value changed by hand
    page = tmp_path / "README.md"
    text = (REPO / "README.md").read_text()
    stale = re.sub(r"(<!--fig benchmarks/results\.json serve_batching_speedup_16 [^>]*-->)[^<]*", r"\g<1>9.99x", text)
    assert stale != text
    page.write_text(stale)
    monkeypatch.setattr(quote, "documents", lambda: [page])
    monkeypatch.setattr(quote, "REPO", REPO)
    found = quote.quote(write=False)
    assert len(found) == 1 and "serve_batching_speedup_16 quoted as '9.99x'" in found[0]


def test_the_readme_types_no_figure_by_hand():
    text = re.sub(r"<!--fig .*?<!--/fig-->", "", (REPO / "README.md").read_text())
    typed = re.findall(r"\b\d+(?:\.\d+)?(?:x|%| GiB| s\b)", text)
    assert not typed, f"figures typed by hand into README.md (quote them from a results file): {typed}"
