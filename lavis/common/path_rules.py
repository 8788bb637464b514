"""The rule for paths read from data files: they stay under their data root.

``check_under_root`` refuses, for a whole column at once (vectorised for 1M-row tables), image
paths that would escape the root: ``..`` parts, or absolute paths elsewhere. Builders, the data
checks and the instruction readers all apply this one rule.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc

from lavis.common.errors import DataError

_PARENT_PART = r"(^|[\\/])\.\.([\\/]|$)"
_WINDOWS_ABSOLUTE = r"^([A-Za-z]:|[\\/]{2})"


def check_under_root(
    paths: pa.Array | pa.ChunkedArray | list, root: Path, field: str, where: Callable[[int], str],
    kind: str = "image path",
) -> None:
    """Refuse (``DataError``) image paths that would leave ``root``; vectorised for 1M-row tables.

    Relative paths without ``..`` parts are fine; absolute paths are fine only inside ``root``.
    Symlinks inside the root are trusted (data sets are often assembled with them). ``where(i)``
    names the file and line/row that entry ``i`` came from; ``kind`` what the paths are.
    """
    array = pa.chunked_array([pa.array(paths, pa.string())]) if isinstance(paths, list) else paths
    if len(array) == 0:
        return
    array = pc.cast(array, pa.string())
    inside = None
    for prefix in {os.path.abspath(root), os.path.realpath(root)}:
        starts = pc.starts_with(array, prefix.rstrip("/") + "/")
        inside = starts if inside is None else pc.or_(inside, starts)
    absolute = pc.or_(pc.starts_with(array, "/"), pc.match_substring_regex(array, _WINDOWS_ABSOLUTE))
    outside = pc.and_(absolute, pc.invert(inside))
    bad = pc.or_(pc.match_substring_regex(array, _PARENT_PART), outside)
    bad = pc.fill_null(bad, False)
    if not pc.any(bad).as_py():
        return
    first = pc.index(bad, True).as_py()
    value = array[first].as_py()
    count = pc.sum(bad).as_py()
    raise DataError(
        f"{where(first)}, field '{field}': {kind} {value!r} escapes the data root "
        f"{root} ({count} such path(s)); {kind}s must be relative to the root without '..'"
    )
