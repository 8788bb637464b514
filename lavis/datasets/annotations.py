"""Annotation file readers that fail at build time with the file, line/row and field named.

Locations are 1-based: ``line N`` for JSONL and JSON syntax errors, ``record N`` for the items of
a JSON list or pickle, ``row N`` for CSV and parquet data rows (the CSV header is not counted).
CSV and parquet are read with pyarrow into tables, so a 1M-row file costs no per-row Python work.
"""

from __future__ import annotations

import csv
import glob
import logging
import pickle
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pv
import pyarrow.parquet as pq

from lavis.common.errors import DataError
from lavis.common.jsonio import iter_json_lines, iter_json_list, read_json  # noqa: F401  (read_json: re-exported)
from lavis.common.textio import open_utf8

logger = logging.getLogger(__name__)

# Optional table columns saying where each row came from, kept through filtering and dropped at
# build, so that messages name the file's own row: ROW holds the 1-based file row (cheap for
# 1M-row CSVs), WHERE the full "file: line N" / "file: record N" text (question sets).
ROW = "_row"
WHERE = "_where"

_TYPE_NAMES = {str: "a string", int: "an integer", float: "a number", list: "a list", dict: "an object"}


def data_file(root: Path, relative: str, key: str) -> Path:
    """A file named in config, resolved under the storage root; missing -> ``DataError``."""
    path = Path(relative) if Path(relative).is_absolute() else root / relative
    if not path.is_file():
        raise DataError(f"config key '{key}': file {path} not found")
    return path


def data_files(root: Path, pattern: str, key: str) -> list[Path]:
    """Files matching a glob under the storage root, sorted; none -> ``DataError``."""
    full = pattern if Path(pattern).is_absolute() else str(root / pattern)
    paths = sorted(Path(p) for p in glob.glob(full) if Path(p).is_file())
    if not paths:
        raise DataError(f"config key '{key}': no file matches {full}")
    return paths


def field(record: Any, name: str, where: str, kind: type | tuple[type, ...] = str, required: bool = True) -> Any:
    """``record[name]`` checked for presence and type; ``where`` is e.g. ``"a.jsonl: line 3"``."""
    kinds = kind if isinstance(kind, tuple) else (kind,)
    expected = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
    if not isinstance(record, Mapping):
        raise DataError(f"{where}: expected an object with field '{name}', got {type(record).__name__}")
    value = record.get(name)
    if value is None:
        if required:
            raise DataError(f"{where}, field '{name}': missing (expected {expected})")
        return None
    if not isinstance(value, kinds) or isinstance(value, bool) and bool not in kinds:
        raise DataError(f"{where}, field '{name}': expected {expected}, got {value!r}")
    return value


def read_json_list(path: Path) -> list[Any]:
    """The items of a file holding one JSON list of records."""
    return [record.value for record in iter_json_list(path, expected="a JSON list of records")]


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON object per line; blank lines are allowed."""
    return [record.value for record in iter_json_lines(path, objects=True)]


class _PlainDataUnpickler(pickle.Unpickler):
    """Loads lists/dicts/strings/numbers only: a data file must not be able to run code."""

    _ALLOWED = {
        ("collections", "OrderedDict"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
    }

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refers to {module}.{name}; only plain data is accepted")


def read_pickle(path: Path) -> Any:
    try:
        with open(path, "rb") as f:
            return _PlainDataUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, ImportError) as err:
        raise DataError(f"{path}: not a readable data pickle ({err})") from None


def _csv_header(path: Path) -> list[str]:
    with open_utf8(path) as f:
        try:
            return next(csv.reader(f))
        except StopIteration:
            raise DataError(f"{path}: empty CSV file (no header line)") from None


def _locate_csv_problem(path: Path, width: int) -> str:
    """Slow exact scan, only after pyarrow refused the file: which line is wrong and how."""
    with open_utf8(path) as f:
        reader = csv.reader(f)
        try:
            next(reader)
            for row_number, row in enumerate(reader, start=1):
                if len(row) != width and row:
                    return f"row {row_number} (line {reader.line_num}): expected {width} fields, got {len(row)}"
        except csv.Error as err:
            return f"line {reader.line_num}: {err}"
    return "unparseable CSV"


def read_csv(path: Path, columns: Sequence[str], optional: Sequence[str] = ()) -> pa.Table:
    """Selected columns of a CSV as a string table; empty cells become nulls."""
    header = _csv_header(path)
    missing = [c for c in columns if c not in header]
    if missing:
        raise DataError(f"{path}: line 1 (header): missing column(s) {missing}; found {header}")
    include = [c for c in (*columns, *optional) if c in header]
    invalid: list[Any] = []

    def on_invalid(row: Any) -> str:
        invalid.append(row)
        return "skip"

    try:
        table = pv.read_csv(
            path,
            parse_options=pv.ParseOptions(newlines_in_values=True, invalid_row_handler=on_invalid),
            convert_options=pv.ConvertOptions(
                include_columns=include,
                column_types={c: pa.string() for c in include},
                strings_can_be_null=True,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError) as err:
        raise DataError(f"{path}: malformed CSV: {_locate_csv_problem(path, len(header))} ({err})") from None
    if invalid:
        raise DataError(f"{path}: malformed CSV: {_locate_csv_problem(path, len(header))}")
    return table


def read_parquet(paths: Sequence[Path], columns: Sequence[str], optional: Sequence[str] = ()) -> pa.Table:
    """Selected columns of one or more parquet files (same schema) as one table."""
    tables = []
    for path in paths:
        try:
            names = pq.ParquetFile(path).schema_arrow.names
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{path}: not a readable parquet file ({err})") from None
        missing = [c for c in columns if c not in names]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; found {names}")
        wanted = [c for c in (*columns, *optional) if c in names]
        try:
            tables.append(pq.read_table(path, columns=wanted, memory_map=True))
        except (pa.ArrowException, OSError) as err:
            raise DataError(f"{path}: not a readable parquet file ({err})") from None
    try:
        return pa.concat_tables(tables, promote_options="default").combine_chunks()
    except pa.ArrowInvalid as err:
        raise DataError(f"{', '.join(map(str, paths))}: parquet files with different schemas ({err})") from None


def blank(array: pa.Array | pa.ChunkedArray) -> pa.ChunkedArray:
    """True where a value is null, or (strings) empty or only whitespace; no string copies."""
    if pa.types.is_string(array.type) or pa.types.is_large_string(array.type):
        return pc.fill_null(pc.or_(pc.equal(pc.utf8_length(array), 0), pc.utf8_is_space(array)), True)
    return pc.is_null(array)


def require_non_null(table: pa.Table, column: str, source: str) -> None:
    """Every row of ``column`` must have a value; report the first (file) row that does not."""
    empty = blank(table.column(column))
    if pc.any(empty).as_py():
        first = pc.index(empty, True).as_py()
        number = table.column(ROW)[first].as_py() if ROW in table.column_names else first + 1
        count = pc.sum(empty).as_py()
        raise DataError(f"{source}: row {number}, field '{column}': empty value ({count} row(s) like this)")


def check_unique(values: Iterable[Any], source: str, what: str, required: bool) -> None:
    """Duplicates are an error where ids must be unique (evaluation), else a logged warning."""
    counts = Counter(values)
    duplicates = [value for value, count in counts.items() if count > 1]
    if not duplicates:
        return
    extra = sum(counts[v] - 1 for v in duplicates)
    message = f"{source}: {len(duplicates)} duplicate {what}(s), {extra} extra row(s); first: {duplicates[:5]}"
    if required:
        raise DataError(message + f"; every {what} must be unique here")
    logger.warning(message)
