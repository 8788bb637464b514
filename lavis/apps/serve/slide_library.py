"""The slides one server shows (``--slides DIR``): their list, DeepZoom tiles, regions read for a
question, and the analyses ``lavis.slides`` wrote for them.

Nothing outside DIR is ever opened. A slide is known by its path relative to DIR (``case1.svs``,
``lung/case7.ndpi``); requests name slides by that id, and an id is looked up in the list made by
walking DIR, never joined onto a path, so ``..``, absolute paths and names of files elsewhere
find nothing. Files (or folders) that are symbolic links leading out of DIR are left out of the
list, and every open checks again that the file's real path is inside DIR.

Slides are read with :mod:`lavis.apps.slides.reader` (every OpenSlide format and plain images),
tiles with OpenSlide's DeepZoom generator (OpenSeadragon's layout: ``{id}.dzi`` and
``{id}_files/{level}/{col}_{row}.{jpeg|png}``, 254-px tiles with a 1-px overlap, the whole level-0
plane so that viewer coordinates at the deepest level are level-0 pixels).

Overlays: each folder under DIR or ``--slide-results`` holding a ``slide.json`` is a finished
``lavis.slides`` job; its questions' ``regions.geojson`` (level-0 polygons with a score per tile)
are offered for the slide with the same content id (OpenSlide's quickhash, or the file's sha256),
wherever the slide was when it was analysed.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

from PIL import Image

from lavis.apps.slides.reader import (
    PLAIN_SUFFIXES,
    SLIDE_SUFFIXES,
    PlainImageReader,
    SlideInfo,
    SlideReader,
    open_slide,
)
from lavis.common.errors import DataError

logger = logging.getLogger(__name__)

SUFFIXES = tuple(sorted(set(SLIDE_SUFFIXES + PLAIN_SUFFIXES)))
MAX_DEPTH = 4  # folder levels walked under DIR (and under each --slide-results folder)
MAX_SLIDES = 10_000
TILE_SIZE, OVERLAP = 254, 1
OPEN_HANDLES = 8  # slides kept open (readers and DeepZoom generators)


class SlideNotFound(DataError):
    """No slide (or overlay) of that id in the folder."""


@dataclasses.dataclass(frozen=True)
class Overlay:
    question: str
    mode: str
    tiles: int
    geojson: Path
    heatmap: Path | None


@dataclasses.dataclass
class Slide:
    id: str
    path: Path  # real path, inside the folder
    info: SlideInfo
    overlays: list[Overlay] = dataclasses.field(default_factory=list)

    def card(self) -> dict[str, Any]:
        """What ``GET /v1/slides`` says about it."""
        width, height = self.info.dimensions
        return {"id": self.id, "object": "slide", "name": self.path.stem, "width": width, "height": height,
                "mpp": self.info.mpp, "format": self.info.format, "levels": len(self.info.level_dimensions),
                "dzi": f"/slides/{self.id}.dzi",
                "overlays": [{"index": i, "question": o.question, "mode": o.mode, "tiles": o.tiles,
                              "url": f"/v1/slides/{self.id}/overlays/{i}"} for i, o in enumerate(self.overlays)]}


class SlideLibrary:
    """The slides under ``root``; analyses under ``root`` and ``results`` as their overlays."""

    def __init__(self, root: str | os.PathLike, results: list[str | os.PathLike] = ()) -> None:
        self.root = Path(root).expanduser().resolve()
        if not self.root.is_dir():
            raise DataError(f"--slides '{root}': no such folder")
        self.results = [Path(r).expanduser().resolve() for r in results]
        for folder in self.results:
            if not folder.is_dir():
                raise DataError(f"--slide-results '{folder}': no such folder")
        self._lock = threading.Lock()
        self._warned: set[Path] = set()
        self._slides: dict[str, Slide] = {}
        self._infos: dict[tuple[Path, int, int], SlideInfo] = {}  # (path, size, mtime) -> info, opened once
        self._open: collections.OrderedDict[str, tuple[SlideReader, Any, threading.Lock]] = collections.OrderedDict()
        self.refresh()

    # ---- the list --------------------------------------------------------------------------
    def refresh(self) -> list[Slide]:
        """Walk the folder again (slides added or removed since), and the analyses."""
        slides = {}
        for path in self._walk(self.root, lambda p: p.suffix.lower() in SUFFIXES):
            slide_id = path.relative_to(self.root).as_posix()
            info = self._info(path)
            if info is not None:
                slides[slide_id] = Slide(slide_id, path.resolve(), info)
        by_content = {s.info.content_id: s for s in slides.values()}
        for record in [*self._walk(self.root, lambda p: p.name == "slide.json"),
                       *(r for folder in self.results for r in self._walk(folder, lambda p: p.name == "slide.json"))]:
            self._attach_overlays(record, by_content)
        with self._lock:
            self._slides = slides
        return list(slides.values())

    def _walk(self, top: Path, wanted) -> list[Path]:
        """Files under ``top`` (not hidden, at most ``MAX_DEPTH`` folders down) whose real path stays inside it."""
        found: list[Path] = []
        for folder, dirs, files in os.walk(top, followlinks=False):
            depth = len(Path(folder).relative_to(top).parts)
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and depth < MAX_DEPTH
                             and _inside(Path(folder, d), top))
            for name in sorted(files):
                path = Path(folder, name)
                if name.startswith(".") or not wanted(path):
                    continue
                if not _inside(path, top):
                    if path not in self._warned:
                        logger.warning("slides: %s leads outside %s (a link); left out", path, top)
                        self._warned.add(path)
                    continue
                found.append(path)
                if len(found) >= MAX_SLIDES:
                    logger.warning("slides: more than %d files under %s; the rest are left out", MAX_SLIDES, top)
                    return found
        return found

    def _info(self, path: Path) -> SlideInfo | None:
        stat = path.stat()
        key = (path, stat.st_size, stat.st_mtime_ns)
        if key not in self._infos:
            try:
                reader = open_slide(path)
            except DataError as err:
                logger.warning("slides: %s is left out: %s", path, err)
                return None
            self._infos[key] = reader.info
            reader.close()
        return self._infos[key]

    def _attach_overlays(self, record: Path, by_content: dict[str, Slide]) -> None:
        try:
            meta = json.loads(record.read_text())
            slide = by_content.get(meta["slide"]["content_id"])
        except (OSError, ValueError, KeyError, TypeError):
            return
        if slide is None:
            return
        for folder, question in sorted((meta.get("questions") or {}).items()):
            base = record.parent / folder
            geojson = base / "regions.geojson"
            if not (base / "summary.json").is_file() or not geojson.is_file() or not _inside(geojson, record.parent):
                continue  # not finished (summary.json is written last)
            try:
                summary = json.loads((base / "summary.json").read_text())
            except ValueError:
                continue
            heatmap = base / "heatmap.png"
            slide.overlays.append(Overlay(str(question.get("question", summary.get("question", folder))),
                                          str(summary.get("mode", "")), int(summary.get("tiles", {}).get("analysed", 0)),
                                          geojson, heatmap if heatmap.is_file() else None))

    def slides(self) -> list[Slide]:
        return self.refresh()

    def find(self, slide_id: str) -> Slide:
        """The slide of that id (the list is walked again for an id not seen yet); ``SlideNotFound`` otherwise."""
        with self._lock:
            slide = self._slides.get(slide_id)
        if slide is None:
            slide = {s.id: s for s in self.refresh()}.get(slide_id)
        if slide is None or not _inside(slide.path, self.root):
            raise SlideNotFound(f"no slide '{slide_id[:120]}' in the slide folder (GET /v1/slides lists them)")
        return slide

    def overlay(self, slide_id: str, index: int) -> Overlay:
        slide = self.find(slide_id)
        if not 0 <= index < len(slide.overlays):
            raise SlideNotFound(f"slide '{slide_id[:120]}' has no overlay {index}")
        return slide.overlays[index]

    # ---- pixels ----------------------------------------------------------------------------
    def _handles(self, slide: Slide) -> tuple[SlideReader, Any, threading.Lock]:
        """(reader, DeepZoom generator, lock) of an open slide; the least recently used are closed."""
        import openslide
        from openslide.deepzoom import DeepZoomGenerator

        with self._lock:
            if slide.id in self._open:
                self._open.move_to_end(slide.id)
                return self._open[slide.id]
        reader = open_slide(slide.path)
        source = (openslide.ImageSlide(Image.fromarray(reader.array())) if isinstance(reader, PlainImageReader)
                  else openslide.OpenSlide(str(slide.path)))
        handles = (reader, DeepZoomGenerator(source, TILE_SIZE, OVERLAP, limit_bounds=False), threading.Lock())
        with self._lock:
            self._open[slide.id] = handles
            while len(self._open) > OPEN_HANDLES:
                old_reader, old_zoom, _ = self._open.popitem(last=False)[1]
                old_reader.close()
        return handles

    def dzi(self, slide_id: str, fmt: str) -> str:
        _, zoom, _ = self._handles(self.find(slide_id))
        return zoom.get_dzi(fmt)

    def tile(self, slide_id: str, level: int, col: int, row: int) -> Image.Image:
        """One DeepZoom tile; ``SlideNotFound`` for a level or tile the slide does not have."""
        _, zoom, lock = self._handles(self.find(slide_id))
        if not 0 <= level < zoom.level_count:
            raise SlideNotFound(f"slide '{slide_id[:120]}' has DeepZoom levels 0 to {zoom.level_count - 1}, not {level}")
        cols, rows = zoom.level_tiles[level]
        if not (0 <= col < cols and 0 <= row < rows):
            raise SlideNotFound(f"level {level} of slide '{slide_id[:120]}' has {cols} x {rows} tiles, not ({col}, {row})")
        with lock:
            return zoom.get_tile(level, (col, row))

    def region(self, slide_id: str, box: tuple[int, int, int, int], side: int) -> Image.Image:
        """The level-0 ``box`` (x, y, w, h) read at ``side`` pixels on its longer side (from the
        coarsest level fine enough: pixels are only ever shrunk)."""
        reader, _, lock = self._handles(self.find(slide_id))
        with lock:
            image, _ = reader.region_thumbnail(box, side)
        return image


def _inside(path: Path, top: Path) -> bool:
    try:
        return path.resolve().is_relative_to(top.resolve())
    except OSError:
        return False
