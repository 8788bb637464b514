"""Images from a user: bytes (an upload) or a file, decoded within byte and pixel limits.

Decoding itself is :func:`lavis.datasets.image_io.decode_rgb` (the pixel count is checked before
any pixel is decoded, truncated files fail, the result is RGB); this module adds the byte limit
and turns refusals into :class:`InputError` with the status a server answers with.
"""

from __future__ import annotations

import io
import os

from PIL import Image

from lavis.apps.inference.errors import InputError
from lavis.common.errors import DataError
from lavis.common.user_files import require_file
from lavis.datasets.image_io import BadImageError, decode_rgb

DEFAULT_MAX_MB = 20.0
DEFAULT_MAX_MEGAPIXELS = 40.0  # a 6000 x 6000 tile; far above any model's input, far below a slide


def image_from_bytes(data: bytes, max_mb: float = DEFAULT_MAX_MB,
                     max_megapixels: float = DEFAULT_MAX_MEGAPIXELS, param: str = "image") -> Image.Image:
    """An RGB image from encoded bytes; ``InputError`` (413 over a limit, 400 otherwise) if not."""
    if not data:
        raise InputError(f"{param}: the image is empty (0 bytes)", "invalid_image", param)
    if len(data) > max_mb * 1024 * 1024:
        raise InputError(
            f"{param}: the image has {len(data) / 1024 / 1024:.1f} MB, over this server's limit of {max_mb:g} MB",
            "image_too_large", param, status=413,
        )
    try:
        return decode_rgb(io.BytesIO(data), int(max_megapixels * 1_000_000))
    except BadImageError as err:
        if err.too_large:
            raise InputError(f"{param}: {err.reason}", "image_too_large", param, status=413) from None
        raise InputError(f"{param}: {err.reason}", "invalid_image", param) from None


def image_from_file(path: str | os.PathLike, max_megapixels: float = DEFAULT_MAX_MEGAPIXELS) -> Image.Image:
    """An RGB image from a file; ``DataError`` naming the file and the reason if not (a FIFO is
    refused before it is opened: reading it would block)."""
    require_file(path)
    try:
        return decode_rgb(str(path), int(max_megapixels * 1_000_000))
    except BadImageError as err:
        raise DataError(f"{path}: {err.reason}") from None
