"""One reader for whole-slide images: every OpenSlide format, and plain images (PNG, JPEG, TIFF).

A reader answers what the slide analysis needs: the pyramid (level sizes and downsamples), the
scan's resolution (microns per pixel, objective power), a content identity, and RGB reads of a
level-0 box at a level. OpenSlide returns RGBA with transparent pixels outside the scanned area;
they are painted the slide's background colour (white by default), never black, which would pass
for tissue. Plain images are one level; their resolution comes from TIFF resolution tags in
centimetres or inches, otherwise from ``--slide-mpp``.

Readers open their file lazily per process: a DataLoader worker forked from the main process
opens its own handle (OpenSlide handles share file offsets across ``fork``), and a reader pickles
as its path.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from lavis.common.errors import DataError
from lavis.common.user_files import file_problem

# Plain images are decoded whole; beyond this many pixels, convert the image to a tiled pyramidal
# TIFF (e.g. ``vips tiffsave in.png out.tif --tile --pyramid``) so that OpenSlide reads it.
MAX_PLAIN_PIXELS = 40_000 * 40_000
SLIDE_SUFFIXES = (".svs", ".ndpi", ".mrxs", ".scn", ".vms", ".vmu", ".bif", ".svslide", ".dcm")
PLAIN_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
# Microns per pixel of a scan at 1x objective: the 10 / power convention (20x ~ 0.5 um/px).
MICRONS_AT_1X = 10.0
PLAUSIBLE_MPP = (0.05, 50.0)  # microns per pixel a microscope scan can have
THUMBNAIL_BLOCK = 4096  # level pixels read at a time for a thumbnail


@dataclasses.dataclass(frozen=True)
class SlideInfo:
    """What the analysis knows about a slide (all sizes are (width, height))."""

    path: str
    format: str  # OpenSlide vendor ("aperio", "generic-tiff", ...) or "image/<PIL format>"
    dimensions: tuple[int, int]
    level_dimensions: tuple[tuple[int, int], ...]
    level_downsamples: tuple[float, ...]
    mpp: float | None  # microns per level-0 pixel (mean of x and y)
    mpp_source: str  # where ``mpp`` came from: "slide", "objective power", "--slide-mpp", "none"
    objective_power: float | None
    content_id: str  # sha256 of the content (OpenSlide quickhash, or the file bytes)
    background: tuple[int, int, int] = (255, 255, 255)

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class SlideReader:
    """Base: the lazy per-process handle and the shared region logic."""

    def __init__(self, path: Path, info: SlideInfo) -> None:
        self.path = path
        self.info = info
        self._pid: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_pid"] = None  # a new process opens its own handle
        self._drop_handle(state)
        return state

    def _drop_handle(self, state: dict[str, Any]) -> None:
        """Remove process-bound handles from a pickled state (subclasses)."""

    def read(self, level: int, x: int, y: int, width: int, height: int) -> Image.Image:
        """RGB pixels of the box whose top-left is (x, y) in level-0 pixels, ``width`` x ``height``
        pixels of ``level``."""
        raise NotImplementedError  # abstract: each format reads its own way

    def best_level_for(self, downsample: float) -> int:
        """The coarsest level that is still at least as fine as ``downsample``."""
        best = 0
        for level, value in enumerate(self.info.level_downsamples):
            if value <= downsample * (1 + 1e-6):
                best = level
        return best

    def region_thumbnail(self, box: tuple[int, int, int, int], max_side: int) -> tuple[Image.Image, tuple[float, float]]:
        """The level-0 ``box`` (x, y, w, h) shrunk to at most ``max_side`` pixels a side, read from
        the coarsest level that is fine enough; returns (image, level-0 pixels per image pixel in x, y)."""
        x, y, w, h = box
        scale = max(w, h) / max_side if max(w, h) > max_side else 1.0
        size = (max(1, round(w / scale)), max(1, round(h / scale)))
        level = self.best_level_for(scale)
        ds = self.info.level_downsamples[level]
        level_w, level_h = max(1, round(w / ds)), max(1, round(h / ds))
        out = Image.new("RGB", size, self.info.background)
        # In blocks, so a slide whose pyramid stops early never has a whole level in memory (block
        # edges land within one thumbnail pixel of where a single read would put them).
        for top in range(0, level_h, THUMBNAIL_BLOCK):
            for left in range(0, level_w, THUMBNAIL_BLOCK):
                bw, bh = min(THUMBNAIL_BLOCK, level_w - left), min(THUMBNAIL_BLOCK, level_h - top)
                x0, y0 = left * size[0] // level_w, top * size[1] // level_h
                x1, y1 = (left + bw) * size[0] // level_w, (top + bh) * size[1] // level_h
                if x1 <= x0 or y1 <= y0:
                    continue
                block = self.read(level, x + round(left * ds), y + round(top * ds), bw, bh)
                out.paste(block.resize((x1 - x0, y1 - y0), Image.Resampling.BOX), (x0, y0))
        return out, (w / size[0], h / size[1])

    def close(self) -> None:
        """Release the file handle (reopened on the next read)."""


class OpenSlideReader(SlideReader):
    def __init__(self, path: Path, info: SlideInfo, handle: Any) -> None:
        super().__init__(path, info)
        self._handle = handle
        self._pid = os.getpid()

    def _drop_handle(self, state: dict[str, Any]) -> None:
        state["_handle"] = None

    def _slide(self) -> Any:
        if self._handle is None or self._pid != os.getpid():
            import openslide

            self._handle = openslide.OpenSlide(str(self.path))
            self._pid = os.getpid()
        return self._handle

    def read(self, level: int, x: int, y: int, width: int, height: int) -> Image.Image:
        import openslide

        try:
            rgba = self._slide().read_region((int(x), int(y)), int(level), (int(width), int(height)))
        except openslide.OpenSlideError as err:
            raise DataError(
                f"{self.path}: cannot read the {width}x{height} box at level {level}, level-0 ({x}, {y}): {err} "
                "(the file is damaged or truncated)"
            ) from err
        background = Image.new("RGB", rgba.size, self.info.background)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background

    def close(self) -> None:
        if self._handle is not None and self._pid == os.getpid():
            self._handle.close()
        self._handle = None


class PlainImageReader(SlideReader):
    """One-level images decoded whole (once per process; a forked worker shares the parent's copy)."""

    def __init__(self, path: Path, info: SlideInfo, pixels: np.ndarray | None = None) -> None:
        super().__init__(path, info)
        self._pixels = pixels

    def _drop_handle(self, state: dict[str, Any]) -> None:
        state["_pixels"] = None

    def array(self) -> np.ndarray:
        if self._pixels is None:
            self._pixels = _decode_plain(self.path)[0]
        return self._pixels

    def read(self, level: int, x: int, y: int, width: int, height: int) -> Image.Image:
        if level != 0:
            raise ValueError(f"{self.path} has one level; level {level} was asked for")
        pixels = self.array()
        out = np.empty((height, width, 3), dtype=np.uint8)
        out[:] = self.info.background
        H, W = pixels.shape[:2]
        x0, y0, x1, y1 = max(x, 0), max(y, 0), min(x + width, W), min(y + height, H)
        if x1 > x0 and y1 > y0:
            out[y0 - y : y1 - y, x0 - x : x1 - x] = pixels[y0:y1, x0:x1]
        return Image.fromarray(out)

    def close(self) -> None:
        self._pixels = None


# ---- opening ---------------------------------------------------------------------------------
def open_slide(path: str | os.PathLike, slide_mpp: float | None = None) -> SlideReader:
    """A reader for ``path`` (OpenSlide formats first, then plain images), or a one-line DataError.

    ``slide_mpp`` (``--slide-mpp``) sets the level-0 resolution when the file records none, or
    overrides a wrong one.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise DataError(f"slide '{path}': no such file")
    if path.is_dir() and path.suffix.lower() != ".mrxs":
        raise DataError(f"slide '{path}' is a folder; pass the slide file (for MIRAX, the .mrxs beside its folder)")
    problem = None if path.is_dir() else file_problem(path)
    if problem:  # a FIFO would block OpenSlide's read forever
        raise DataError(f"slide '{path}': {problem}")
    if slide_mpp is not None and not slide_mpp > 0:
        raise DataError(f"--slide-mpp must be a positive number of microns per pixel, got {slide_mpp}")
    import openslide

    try:
        vendor = openslide.OpenSlide.detect_format(str(path))
    except openslide.OpenSlideError as err:
        raise DataError(f"slide '{path}': unreadable ({err})") from err
    if vendor is not None:
        return _open_openslide(path, vendor, slide_mpp)
    return _open_plain(path, slide_mpp)


def _open_openslide(path: Path, vendor: str, slide_mpp: float | None) -> OpenSlideReader:
    import openslide

    try:
        handle = openslide.OpenSlide(str(path))
    except (openslide.OpenSlideError, OSError) as err:
        raise DataError(f"slide '{path}' ({vendor}) cannot be opened: {err} (the file is damaged or incomplete)") from err
    props = handle.properties
    mpp = _mean_positive(props.get(openslide.PROPERTY_NAME_MPP_X), props.get(openslide.PROPERTY_NAME_MPP_Y))
    power = _positive(props.get(openslide.PROPERTY_NAME_OBJECTIVE_POWER))
    background = _hex_colour(props.get(openslide.PROPERTY_NAME_BACKGROUND_COLOR))
    quickhash = props.get(openslide.PROPERTY_NAME_QUICKHASH1)
    info = SlideInfo(
        path=str(path), format=vendor, dimensions=tuple(handle.dimensions),
        level_dimensions=tuple(tuple(d) for d in handle.level_dimensions),
        level_downsamples=tuple(float(d) for d in handle.level_downsamples),
        **_resolution(mpp, power, slide_mpp),
        content_id=f"openslide-quickhash-1:{quickhash}" if quickhash else f"sha256:{file_sha256(path)}",
        background=background,
    )
    return OpenSlideReader(path, info, handle)


def _open_plain(path: Path, slide_mpp: float | None) -> PlainImageReader:
    suffix = path.suffix.lower()
    if suffix in SLIDE_SUFFIXES:
        raise DataError(f"slide '{path}': OpenSlide does not recognise it (damaged, truncated, or not a {suffix} slide)")
    if suffix not in PLAIN_SUFFIXES:
        raise DataError(
            f"slide '{path}': not a format OpenSlide reads ({', '.join(SLIDE_SUFFIXES)}, tiled .tif) "
            f"nor a plain image ({', '.join(PLAIN_SUFFIXES)})"
        )
    pixels, kind, mpp = _decode_plain(path)
    height, width = pixels.shape[:2]
    info = SlideInfo(
        path=str(path), format=f"image/{kind}", dimensions=(width, height),
        level_dimensions=((width, height),), level_downsamples=(1.0,),
        **_resolution(mpp, None, slide_mpp), content_id=f"sha256:{file_sha256(path)}",
    )
    return PlainImageReader(path, info, pixels)


def _decode_plain(path: Path) -> tuple[np.ndarray, str, float | None]:
    """(RGB pixels, PIL format name, microns per pixel from TIFF tags or None)."""
    from PIL import UnidentifiedImageError

    limit = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None  # our own limit, with a message saying what to do, applies instead
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > MAX_PLAIN_PIXELS:
                raise DataError(
                    f"slide '{path}': a plain {width}x{height} image is too large to decode whole; convert it "
                    "to a tiled pyramidal TIFF (e.g. `vips tiffsave in out.tif --tile --pyramid`)"
                )
            image.load()
            kind = (image.format or path.suffix.lstrip(".")).lower()
            return np.asarray(_flatten(image)), kind, _tiff_mpp(image)
    except UnidentifiedImageError as err:
        raise DataError(f"slide '{path}': neither OpenSlide nor PIL can read it (not a slide or image file)") from err
    except (OSError, SyntaxError, ValueError) as err:
        raise DataError(f"slide '{path}': unreadable or truncated image ({err})") from err
    finally:
        Image.MAX_IMAGE_PIXELS = limit


def _flatten(image: Image.Image) -> Image.Image:
    """RGB on white: transparent pixels are glass, not black tissue."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))
        return out
    return image.convert("RGB")


def _tiff_mpp(image: Image.Image) -> float | None:
    """Microns per pixel from TIFF resolution tags when their unit is a length (cm or inch)."""
    if image.format != "TIFF":
        return None
    tags = image.tag_v2
    unit = tags.get(296, 2)  # ResolutionUnit: 1 none, 2 inch (the TIFF default), 3 centimetre
    microns = {2: 25_400.0, 3: 10_000.0}.get(int(unit))
    values = [float(tags[t]) for t in (282, 283) if t in tags and float(tags[t]) > 0]  # X/YResolution
    if microns is None or not values:
        return None
    mpp = float(np.mean([microns / v for v in values]))
    # Screen defaults (72 or 96 dpi = 350 or 265 um/px) are not a microscope's resolution.
    return mpp if PLAUSIBLE_MPP[0] <= mpp <= PLAUSIBLE_MPP[1] else None


def _resolution(mpp: float | None, power: float | None, override: float | None) -> dict[str, Any]:
    if override is not None:
        return {"mpp": float(override), "mpp_source": "--slide-mpp", "objective_power": power}
    if mpp is not None:
        return {"mpp": mpp, "mpp_source": "slide", "objective_power": power}
    if power is not None:
        return {"mpp": MICRONS_AT_1X / power, "mpp_source": "objective power", "objective_power": power}
    return {"mpp": None, "mpp_source": "none", "objective_power": None}


def _positive(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 and np.isfinite(number) else None


def _mean_positive(*values: Any) -> float | None:
    numbers = [v for v in map(_positive, values) if v is not None]
    return float(np.mean(numbers)) if numbers else None


def _hex_colour(value: str | None) -> tuple[int, int, int]:
    try:
        return tuple(bytes.fromhex(value)) if value and len(value) == 6 else (255, 255, 255)  # type: ignore[return-value]
    except ValueError:
        return (255, 255, 255)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    """sha256 of a file's bytes (plain images and slides without an OpenSlide quickhash)."""
    sha = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            sha.update(block)
    return sha.hexdigest()
