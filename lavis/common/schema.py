"""Typed config sections: plain dataclasses validated from (OmegaConf or dict) mappings.

Every configurable component declares a ``Config`` dataclass. ``from_mapping`` turns the user's
mapping into that dataclass and fails at start, naming the full key, when a key is unknown
(with the closest valid key), missing, or of the wrong type.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, TypeVar, Union

from lavis.common.errors import ConfigError

T = TypeVar("T")

_NONE = type(None)


def plain(value: Any) -> Any:
    """OmegaConf containers -> plain Python containers (no import cycle on omegaconf)."""
    from omegaconf import DictConfig, ListConfig, OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    if isinstance(value, (DictConfig, ListConfig)):
        try:
            return OmegaConf.to_container(value, resolve=True)
        except OmegaConfBaseException as err:  # e.g. a failed ${...} interpolation
            raise ConfigError(str(err).splitlines()[0]) from None
    return value


def suggest(key: str, valid: list[str]) -> str:
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    return f" Did you mean '{close[0]}'?" if close else ""


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Check ``value`` against annotation ``tp``; allow only lossless conversions."""
    if tp is Any or tp is object:
        return value
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)

    if origin in (Union, types.UnionType):
        if value is None and _NONE in args:
            return None
        for arg in args:
            if arg is _NONE:
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                pass
        raise ConfigError(f"config key '{where}': expected {_type_name(tp)}, got {value!r}")

    if origin is Literal:
        if isinstance(value, bool) and not any(isinstance(a, (bool, int)) for a in args):
            value = _spelled_word(value, args, where)
        if value not in args:
            raise ConfigError(f"config key '{where}': {value!r} is not one of {list(args)}")
        return value

    if dataclasses.is_dataclass(tp):
        return as_config(tp, value, where)

    if origin in (list, tuple) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"config key '{where}': expected a list, got {value!r}")
        fixed = origin is tuple and args and args[-1] is not Ellipsis
        if fixed and len(args) != len(value):
            raise ConfigError(f"config key '{where}': expected {len(args)} items, got {len(value)}")
        item_types = args if fixed else [args[0] if args else Any] * len(value)
        items = [_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, item_types))]
        return tuple(items) if (origin is tuple or tp is tuple) else items

    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{where}': expected a mapping, got {value!r}")
        val_tp = args[1] if len(args) == 2 else Any
        return {str(k): _coerce(v, val_tp, f"{where}.{k}") for k, v in value.items()}

    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"config key '{where}': expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"config key '{where}': expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" as a string
            try:
                return float(value)
            except ValueError:
                pass
        raise ConfigError(f"config key '{where}': expected a number, got {value!r}")
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"config key '{where}': expected a string, got {value!r}")
    if isinstance(tp, type):
        if isinstance(value, tp):
            return value
        raise ConfigError(f"config key '{where}': expected {tp.__name__}, got {value!r}")
    return value


# YAML 1.1 (PyYAML, OmegaConf) reads on/off, yes/no and true/false unquoted as booleans: a choice
# that offers one of these words takes the boolean back as that word (`feature_cache: off`).
_BOOL_WORDS = (("on", "off"), ("yes", "no"), ("true", "false"))


def _spelled_word(value: bool, choices: tuple, where: str) -> Any:
    for yes, no in _BOOL_WORDS:
        word = yes if value else no
        if word in choices:
            return word
    raise ConfigError(
        f"config key '{where}': {value!r} (YAML reads unquoted on/off/yes/no as true/false) is not one of {list(choices)}"
    )


# ---- allowed ranges of numbers -----------------------------------------------------------------
MAX_COUNT = 2**31 - 1  # the upper bound of counts (batch sizes, steps): past it torch's and Python's indexing fail


@dataclasses.dataclass(frozen=True)
class Range:
    """Bounds of a number; a float must also be finite (nan and inf pass no comparison honestly)."""

    ge: float | None = None
    gt: float | None = None
    le: float | None = None
    lt: float | None = None

    def allows(self, value: float) -> bool:
        if isinstance(value, float) and not math.isfinite(value):
            return False
        return ((self.ge is None or value >= self.ge) and (self.gt is None or value > self.gt)
                and (self.le is None or value <= self.le) and (self.lt is None or value < self.lt))

    def describe(self, integer: bool) -> str:
        parts = [f"{op} {int(bound) if float(bound).is_integer() else bound}"
                 for op, bound in ((">=", self.ge), (">", self.gt), ("<=", self.le), ("<", self.lt)) if bound is not None]
        return f"{'an integer' if integer else 'a finite number'} {' and '.join(parts)}".rstrip()


def ranged(default: Any = dataclasses.MISSING, *, ge: float | None = None, gt: float | None = None,
           le: float | None = None, lt: float | None = None, default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field whose number (or each number of a list, tuple or mapping) must lie in a
    range, checked by :func:`from_mapping`: ``init_lr: float = ranged(1e-4, gt=0)``."""
    return dataclasses.field(default=default, default_factory=default_factory,
                             metadata={"range": Range(ge=ge, gt=gt, le=le, lt=lt)})


def _check_range(value: Any, bounds: Range, where: str) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, (list, tuple)):
        for i, item in enumerate(value):
            _check_range(item, bounds, f"{where}[{i}]")
    elif isinstance(value, Mapping):
        for key, item in value.items():
            _check_range(item, bounds, f"{where}.{key}")
    elif isinstance(value, (int, float)) and not bounds.allows(value):
        raise ConfigError(f"config key '{where}': {value!r} is out of range; allowed: "
                          f"{bounds.describe(isinstance(value, int))}")


def field_names(schema: type) -> list[str]:
    return [f.name for f in dataclasses.fields(schema)]


def from_mapping(schema: type[T], data: Mapping[str, Any] | None, where: str) -> T:
    """Build ``schema`` from ``data``; ``where`` is the dotted path used in error messages."""
    data = plain(data) if data is not None else {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"config key '{where}': expected a mapping, got {data!r}")
    hints = typing.get_type_hints(schema)
    fields = {f.name: f for f in dataclasses.fields(schema) if f.init}
    valid = sorted(fields)
    for key in data:
        if key not in fields:
            raise ConfigError(
                f"unknown config key '{where}.{key}' in section '{where}'.{suggest(str(key), valid)} "
                f"Valid keys: {', '.join(valid)}"
            )
    kwargs = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _coerce(data[name], hints[name], f"{where}.{name}")
            if "range" in field.metadata:
                _check_range(kwargs[name], field.metadata["range"], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(
                f"missing required config key '{where}.{name}' ({_type_name(hints[name])})"
            )
    obj = schema(**kwargs)
    check = getattr(obj, "validate", None)
    if callable(check):
        try:
            check()
        except ConfigError as err:
            raise ConfigError(f"config section '{where}': {err}") from None
    return obj


def as_config(schema: type[T], cfg: Mapping[str, Any] | T | None, where: str) -> T:
    """``cfg`` itself when it already is a ``schema`` instance, else :func:`from_mapping` of it."""
    return cfg if isinstance(cfg, schema) else from_mapping(schema, cfg, where)


def split_mapping(
    data: Mapping[str, Any] | None, schemas: list[tuple[type, str]], where: str
) -> list[Any]:
    """Validate one flat section against several schemas (e.g. ``run`` = runner + task keys).

    A key must belong to at least one schema; each schema receives the keys it declares.
    """
    data = plain(data) if data is not None else {}
    valid = sorted({name for schema, _ in schemas for name in field_names(schema)})
    for key in data:
        if key not in valid:
            owners = ", ".join(label for _, label in schemas)
            raise ConfigError(
                f"unknown config key '{where}.{key}' in section '{where}' ({owners}).{suggest(str(key), valid)} "
                f"Valid keys: {', '.join(valid)}"
            )
    out = []
    for schema, _ in schemas:
        names = set(field_names(schema))
        out.append(from_mapping(schema, {k: v for k, v in data.items() if k in names}, where))
    return out


def to_dict(obj: Any) -> Any:
    """Dataclass (possibly nested) -> plain dict, for saving the resolved config."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj
