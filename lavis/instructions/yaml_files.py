"""Typed YAML files of this package (protocol, price table, template bank): one loader for all."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, TypeVar

import yaml

from lavis.common.errors import ConfigError
from lavis.common.paths import config_path
from lavis.common.schema import from_mapping

T = TypeVar("T")


def load_typed_yaml(schema: type[T], path: str | os.PathLike | None, default: str, what: str) -> tuple[T, Path, bytes]:
    """(validated ``schema`` instance, resolved path, raw bytes) of ``path`` or ``configs/<default>``."""
    file = Path(path) if path is not None else config_path(default)
    if not file.is_file():
        raise ConfigError(f"{what} {file} not found")
    text = file.read_bytes()
    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{what} {file}: invalid YAML: {err}") from None
    return from_mapping(schema, data, where=str(file)), file, text
