"""Image reading in one place: from a file under the data root or from bytes (parquet, tar shards).

JPEGs much larger than what the image processor keeps are decoded in DCT-scaled draft mode
(``draft``: libjpeg scales by 1/2, 1/4 or 1/8 while decoding, and only when the result still
covers the requested size), so a 1280x720 video frame for a 224-px model is never decoded in full.

Every way an image can be bad ends here as a ``SkippedSample`` with the reason (or ``DataError`` in
strict mode): missing file, non-image file, truncated file, decompression bomb. PIL's global
settings (``MAX_IMAGE_PIXELS``, ``LOAD_TRUNCATED_IMAGES``) are left alone; the pixel limit is
checked here per data set.

Paths are checked at build time too (``lavis.common.path_rules.check_under_root``).
"""

from __future__ import annotations

import io
import os
import warnings

from PIL import Image, UnidentifiedImageError

from lavis.common.errors import DataError
from lavis.common.user_files import file_problem
from lavis.datasets.bad_data import SkippedSample, skip_or_raise

DEFAULT_MAX_PIXELS = 89_478_485  # PIL's own default limit


class BadImageError(DataError):
    """An image that cannot be used, with the reason; ``too_large`` marks the pixel limit (a
    decompression bomb), which a server answers differently from corrupt data."""

    def __init__(self, reason: str, too_large: bool = False) -> None:
        super().__init__(reason)
        self.reason = reason
        self.too_large = too_large


Size = tuple[int, int]


def decode_rgb(stream: io.IOBase | str, max_pixels: int = DEFAULT_MAX_PIXELS, draft: Size | None = None) -> Image.Image:
    """Open, check the pixel count before decoding, decode fully (a JPEG at least ``draft`` =
    (width, height) large in draft mode when ``draft`` is given), return RGB; ``BadImageError``
    otherwise."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
                if width * height > max_pixels:
                    raise BadImageError(
                        f"decompression bomb refused: {width}x{height} = {width * height} pixels "
                        f"exceeds the limit of {max_pixels} (max_image_pixels)",
                        too_large=True,
                    )
                if draft is not None and img.format == "JPEG":
                    img.draft(img.mode, draft)  # a no-op unless the source is >= 2x draft on both sides
                img.load()  # decode now so that truncation is found here, not in a processor
                return img.convert("RGB")
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as err:
        raise BadImageError(f"decompression bomb refused: {err}", too_large=True) from None
    except UnidentifiedImageError:
        raise BadImageError("not an image file (PIL cannot identify it)") from None
    except FileNotFoundError:
        raise BadImageError("file not found") from None
    except IsADirectoryError:
        raise BadImageError("is a directory, not an image file") from None
    except BadImageError:
        raise
    except (OSError, SyntaxError, ValueError) as err:  # truncated or corrupt data
        raise BadImageError(f"unreadable or truncated image: {err}") from None


def _decode(stream: io.IOBase | str, max_pixels: int, draft: Size | None = None) -> Image.Image | str:
    """An RGB image, or the reason it cannot be one."""
    try:
        return decode_rgb(stream, max_pixels, draft)
    except BadImageError as err:
        return err.reason


def _not_a_regular_file(path: str) -> str | None:
    """Why ``path`` is no image file to open, or None (a FIFO named ``x.png`` would block the loader)."""
    problem = file_problem(path)
    return "is a directory, not an image file" if problem == "is a directory, not a file" else problem


def load_image(
    path: str | os.PathLike, strict: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS, draft: Size | None = None
) -> Image.Image | SkippedSample:
    """An RGB image from a file, or a ``SkippedSample`` saying why not; ``draft``: see ``decode_rgb``."""
    problem = _not_a_regular_file(str(path))
    if problem:
        return skip_or_raise(str(path), problem, strict)
    result = _decode(str(path), max_pixels, draft)
    if isinstance(result, str):
        return skip_or_raise(str(path), result, strict)
    return result


def load_image_bytes(
    data: bytes | None, name: str, strict: bool = False, max_pixels: int = DEFAULT_MAX_PIXELS,
    draft: Size | None = None,
) -> Image.Image | SkippedSample:
    """An RGB image from encoded bytes; ``name`` identifies it in reports (file#row, shard/key)."""
    if not data:
        return skip_or_raise(name, "no image bytes", strict)
    result = _decode(io.BytesIO(data), max_pixels, draft)
    if isinstance(result, str):
        return skip_or_raise(name, result, strict)
    return result


def decode_size(processor: object) -> Size | None:
    """The smallest decoded size that loses nothing in ``processor``'s output (its
    ``decode_size()``), or None: decode in full."""
    method = getattr(processor, "decode_size", None)
    return method() if callable(method) else None
