"""A researcher adds a model, data set, task and processor in their own module: no edit to lavis/."""

from __future__ import annotations

import json

import yaml

PLUGIN = '''
import dataclasses
import torch
from torch.utils.data import Dataset

from lavis.datasets.builders.base_builder import BaseBuilderConfig, BaseDatasetBuilder, register_builder
from lavis.models.base_model import BaseModel, BaseModelConfig, register_model
from lavis.processors.base_processor import BaseProcessor, ProcessorConfig, build_processor, register_processor
from lavis.tasks.base_task import BaseTask, register_task


@dataclasses.dataclass
class ShoutConfig(ProcessorConfig):
    suffix: str = "!"


@register_processor("my_shout")
class Shout(BaseProcessor):
    Config = ShoutConfig

    def __call__(self, text):
        return text.upper() + self.cfg.suffix


@dataclasses.dataclass
class MyModelConfig(BaseModelConfig):
    width: int = 1


@register_model("my_model")
class MyModel(BaseModel):
    Config = MyModelConfig
    MODEL_TYPES = {"base": "DEFAULTS_PATH"}

    def __init__(self, cfg):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(cfg.width))

    @classmethod
    def from_config(cls, cfg):
        return cls(cls.parse_config(cfg))

    def forward(self, samples):
        target = torch.tensor([float(len(t)) for t in samples["text_input"]])
        return {"loss": ((self.w.sum() - target) ** 2).mean()}


class Words(Dataset):
    def __init__(self, proc):
        self.items = [proc(w) for w in ["a", "bb", "ccc", "dddd"]]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return {"text_input": self.items[i]}


@dataclasses.dataclass
class MyDataConfig(BaseBuilderConfig):
    pass


@register_builder("my_words")
class MyBuilder(BaseDatasetBuilder):
    Config = MyDataConfig

    def build(self):
        proc = build_processor(self.cfg.text_processor["train"], "datasets.my_words.text_processor.train")
        return {"train": Words(proc), "val": Words(proc)}


@dataclasses.dataclass
class MyTaskConfig:
    report_name: str = "report.json"


@register_task("my_task")
class MyTask(BaseTask):
    Config = MyTaskConfig
    best_mode = "min"

    def valid_step(self, model, samples):
        loss = model(samples)["loss"].item()
        return [{"text": t, "loss": loss} for t in samples["text_input"]]

    def after_evaluation(self, records, split, epoch, output_dir):
        metrics = super().after_evaluation(records, split, epoch, output_dir)
        texts = [r["text"] for r in records]
        (output_dir / self.cfg.report_name).write_text(__import__("json").dumps({"texts": texts, **metrics}))
        return metrics
'''


def write_plugin(tmp_path):
    defaults = tmp_path / "my_model_base.yaml"
    defaults.write_text(yaml.safe_dump({"model": {"arch": "my_model", "model_type": "base", "width": 3}}))
    pkg = tmp_path / "plugins"
    pkg.mkdir()
    (pkg / "my_ext.py").write_text(PLUGIN.replace("DEFAULTS_PATH", str(defaults)))
    return pkg


def write_run(tmp_path, imports):
    run = {
        "task": "my_task", "max_epoch": 2, "batch_size_train": 2, "init_lr": 0.1, "num_workers": 0,
        "device": "cpu", "output_dir": str(tmp_path / "out"), "valid_splits": ["val"], "progress_bar": False,
        "report_name": "words.json",
    }
    if imports:
        run["imports"] = imports
    cfg = {
        "model": {"arch": "my_model", "model_type": "base"},
        "datasets": {"my_words": {"text_processor": {"train": {"name": "my_shout", "suffix": "?!"}}}},
        "run": run,
    }
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_components_from_an_outside_module_via_run_imports(tmp_path, launch):
    pkg = write_plugin(tmp_path)
    cfg = write_run(tmp_path, ["my_ext"])
    proc = launch(["train.py", "--cfg-path", str(cfg), "--print-config"], check=False, extra_path=pkg)
    assert proc.returncode == 0, proc.stderr
    assert "width: 3" in proc.stdout  # from the model's defaults YAML
    launch(["train.py", "--cfg-path", str(cfg)], extra_path=pkg)
    report = json.loads((tmp_path / "out" / "words.json").read_text())
    # every validation item scored once, in order, through the plugin's processor
    assert report["texts"] == ["A?!", "BB?!", "CCC?!", "DDDD?!"]
    assert report["agg_metrics"] == report["loss"] > 0


def test_components_via_import_flag_and_unknown_name_lists_known(tmp_path, launch):
    pkg = write_plugin(tmp_path)
    cfg = write_run(tmp_path, None)
    proc = launch(["train.py", "--cfg-path", str(cfg), "--import", "my_ext", "--print-config"], extra_path=pkg)
    assert "my_words" in proc.stdout
    missing = launch(["train.py", "--cfg-path", str(cfg), "--print-config"], check=False, extra_path=pkg)
    assert missing.returncode == 2
    assert "unknown model 'my_model'" in missing.stderr and "Known models:" in missing.stderr
    typo = launch(
        ["train.py", "--cfg-path", str(cfg), "--import", "my_ext", "--options", "model.widht=4"],
        check=False, extra_path=pkg,
    )
    assert "unknown config key 'model.widht'" in typo.stderr and "Did you mean 'width'?" in typo.stderr
