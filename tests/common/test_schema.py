import dataclasses
from typing import Literal

import pytest

from lavis.common.errors import ConfigError
from lavis.common.schema import as_config, from_mapping, split_mapping


@dataclasses.dataclass
class Vision:
    name: str = "eva_clip_g"
    image_size: int = 224


@dataclasses.dataclass
class Model:
    arch: str
    vision: Vision = dataclasses.field(default_factory=Vision)
    lr: float = 1e-4
    precision: Literal["fp16", "bf16", "fp32"] = "fp16"
    layers: list[int] = dataclasses.field(default_factory=list)
    betas: tuple[float, float] = (0.9, 0.999)
    limit: int | None = None


def test_typed_values_and_nested_sections():
    cfg = from_mapping(Model, {"arch": "x", "vision": {"image_size": 364}, "lr": "1e-5", "betas": [0.9, 0.98]}, "model")
    assert cfg.vision == Vision("eva_clip_g", 364)
    assert cfg.lr == 1e-5 and cfg.betas == (0.9, 0.98)


@pytest.mark.parametrize(
    "data, expected",
    [
        ({"arch": "x", "vison": {}}, "unknown config key 'model.vison' in section 'model'. Did you mean 'vision'?"),
        ({"arch": "x", "vision": {"imagesize": 1}}, "unknown config key 'model.vision.imagesize' in section 'model.vision'. Did you mean 'image_size'?"),
        ({}, "missing required config key 'model.arch' (str)"),
        ({"arch": "x", "precision": "fp8"}, "config key 'model.precision': 'fp8' is not one of ['fp16', 'bf16', 'fp32']"),
        ({"arch": "x", "vision": {"image_size": "big"}}, "config key 'model.vision.image_size': expected an integer, got 'big'"),
        ({"arch": "x", "layers": 3}, "config key 'model.layers': expected a list, got 3"),
        ({"arch": "x", "limit": True}, "config key 'model.limit'"),
        ({"arch": "x", "betas": [0.9]}, "config key 'model.betas': expected 2 items, got 1"),
    ],
)
def test_errors_name_the_key(data, expected):
    with pytest.raises(ConfigError) as err:
        from_mapping(Model, data, "model")
    assert expected in str(err.value)


def test_split_mapping_routes_keys_and_rejects_unknown():
    @dataclasses.dataclass
    class A:
        seed: int = 1

    @dataclasses.dataclass
    class B:
        num_beams: int = 5

    a, b = split_mapping({"seed": 3, "num_beams": 2}, [(A, "runner"), (B, "task")], "run")
    assert (a.seed, b.num_beams) == (3, 2)
    with pytest.raises(ConfigError, match="unknown config key 'run.num_beam'.*Did you mean 'num_beams'"):
        split_mapping({"num_beam": 2}, [(A, "runner"), (B, "task")], "run")


def test_as_config_passes_a_built_config_through_and_checks_a_mapping():
    built = Vision("clip", 336)
    assert as_config(Vision, built, "model.vision") is built
    assert as_config(Vision, {"image_size": 364}, "model.vision") == Vision("eva_clip_g", 364)
    with pytest.raises(ConfigError, match="unknown config key 'model.vision.size'"):
        as_config(Vision, {"size": 1}, "model.vision")
