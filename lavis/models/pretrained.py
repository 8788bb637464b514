"""One loader for any trained model: what the chat, the server, batch prediction and slide analysis open.

``load_pretrained(path)`` recognises

- a training run's checkpoint folder (``runs/X/checkpoints/last``, ``best``, ``step_N``) or the run
  folder itself (``best`` when validation chose one, else ``last``); the model section comes from
  the run's ``config.yaml``, relative paths in it from the folder the run was started in;
- a folder written by ``python -m lavis.models.convert --to ours`` (``config.yaml`` + weights);
- a Hugging Face BLIP-2 / InstructBLIP folder, or a hub id holding that layout or ours (from the
  local cache when offline; ``convert --push-to-hub`` uploads either);
- a single weights file (LAVIS ``.pth``, our ``.safetensors``) with ``config=`` naming a run or
  model YAML (or ``"arch/model_type"``) that says what to build.

and returns the model in eval mode with its eval-time image and question processors.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import torch

from lavis.common.dist import resolve_device
from lavis.common.errors import CheckpointError, ConfigError
from lavis.models.api import load_preprocess, model_config
from lavis.models.base_model import MODELS, BaseModel

logger = logging.getLogger(__name__)

Capability = Literal["answer", "retrieval"]
# Model-section keys holding file paths (resolved against the run's working directory).
_PATH_KEYS = (
    ("checkpoint",), ("init_checkpoint",), ("vision", "pretrained"), ("llm", "name_or_path"),
    ("qformer", "pretrained"), ("qformer", "tokenizer"),
)
_WEIGHT_SUFFIXES = (".pth", ".pt", ".bin", ".safetensors")


@dataclasses.dataclass
class PretrainedModel:
    """A loaded model (eval mode) with what it takes to feed it one image and one question."""

    model: BaseModel
    vis_processor: Any  # PIL image -> (3, H, W) tensor, the eval transform the model was trained for
    text_processor: Any  # question string -> cleaned string
    source: str  # what was loaded (the checkpoint folder / file / hub id)
    kind: str  # "run", "folder", "hf" or "file"
    name: str  # a short name for logs and the server's model id
    generation: dict[str, Any] = dataclasses.field(default_factory=dict)  # run.generation, if the run had one

    @property
    def can_answer(self) -> bool:
        """Stage-2 models (an LLM behind the Q-Former) answer questions; stage 1 only scores image-text pairs."""
        return callable(getattr(self.model, "generate", None)) and hasattr(self.model, "bridge")

    @property
    def can_retrieve(self) -> bool:
        return callable(getattr(self.model, "itc_similarity", None))


def load_pretrained(
    path: str | os.PathLike,
    device: str | torch.device = "cpu",
    precision: str | None = None,
    *,
    config: str | os.PathLike | None = None,
    require: Capability | None = "answer",
    check_provenance: bool = True,
) -> PretrainedModel:
    """Load a trained model for inference (see the module docstring for what ``path`` may be).

    ``precision`` (bf16 / fp16 / fp32) sets the frozen image encoder's and LLM's dtype; None keeps
    the model's own. ``require="answer"`` refuses a stage-1 model with a message saying what can use
    it; ``"retrieval"`` needs image-text similarity (stage 1); None accepts any model.
    ``check_provenance``: refuse a checkpoint whose recorded frozen parts (LLM, its tokenizer, the
    image encoder's weights) differ from the ones configured now (see :mod:`lavis.common.provenance`).
    """
    if precision is not None and precision not in ("bf16", "fp16", "fp32"):
        raise ConfigError(f"precision must be bf16, fp16 or fp32, got {precision!r}")
    device = resolve_device(device)
    source = Path(path).expanduser()
    if source.is_file():
        loaded = _from_file(source, config, precision, require)
    elif source.is_dir():
        loaded = _from_folder(source, precision, require)
    elif not str(path).startswith((".", "/", "~")) and str(path).count("/") == 1:
        loaded = _from_hub(str(path), precision, require)
    else:
        raise CheckpointError(
            f"'{path}': no such file or folder. Expected a run's checkpoint folder (runs/X/checkpoints/last), "
            "a folder from `python -m lavis.models.convert --to ours`, a Hugging Face BLIP-2/InstructBLIP "
            "folder or hub id, or a .pth/.safetensors file with --config"
        )
    if check_provenance and loaded.kind in ("run", "file"):
        _check_provenance(loaded)
    loaded.model.to(device).eval()
    return loaded


# ---- sources --------------------------------------------------------------------------------
def _from_folder(folder: Path, precision: str | None, require: Capability | None) -> PretrainedModel:
    config_json = folder / "config.json"
    if config_json.is_file() and _is_hf_blip2(config_json):
        return _from_hf(str(folder), precision, require)
    run_dir, checkpoint = _run_and_checkpoint(folder)
    if run_dir is not None:
        return _from_run(run_dir, checkpoint, precision, require)
    if (folder / "config.yaml").is_file():
        from lavis.models.interop import load_model_folder

        section = _folder_section(folder)
        _check_capability(MODELS.get(section.get("arch")), str(folder), require)
        overrides = _precision_overrides(precision, section)
        model = load_model_folder(folder, is_eval=True, **overrides)
        vis, txt = eval_processors(_to_dict(model.cfg), {})
        return PretrainedModel(model, vis, txt, str(folder), "folder", folder.name)
    raise CheckpointError(
        f"'{folder}' is not a model folder: expected a run checkpoint (model.safetensors + state.pt under "
        "runs/X/checkpoints/), a run folder (config.yaml + checkpoints/), a converted folder (config.yaml + "
        "model.safetensors) or a Hugging Face folder (config.json)"
    )


def run_of_checkpoint(path: Path) -> Path | None:
    """The run folder of a training checkpoint (or of the run folder itself), else None."""
    return _run_and_checkpoint(path)[0] if path.is_dir() else None


def _run_and_checkpoint(folder: Path) -> tuple[Path | None, Path | None]:
    """(run folder, checkpoint folder) when ``folder`` is a run or one of its checkpoints."""
    from lavis.common.checkpoint import WEIGHTS_NAME

    if (folder / "checkpoints").is_dir() and _is_run_config(folder / "config.yaml"):
        for name in ("best", "last"):
            if (folder / "checkpoints" / name / WEIGHTS_NAME).is_file():
                return folder, folder / "checkpoints" / name
        raise CheckpointError(f"run folder '{folder}' has no finished checkpoint under checkpoints/ (best or last)")
    if (folder / WEIGHTS_NAME).is_file():
        for parent in list(folder.resolve().parents)[:3]:
            if _is_run_config(parent / "config.yaml"):
                return parent, folder
        if folder.parent.name == "checkpoints":
            raise CheckpointError(
                f"'{folder}' looks like a training checkpoint but its run folder has no config.yaml with a "
                "'run:' section; pass the weights file with --config naming the run YAML instead"
            )
    return None, None


def _from_run(run_dir: Path, checkpoint: Path, precision: str | None, require: Capability | None) -> PretrainedModel:
    from omegaconf import OmegaConf

    import lavis.common  # noqa: F401  (registers ${pkg:...})

    raw = OmegaConf.load(run_dir / "config.yaml")
    section = OmegaConf.to_container(raw.model, resolve=True)
    bases = run_path_bases(run_dir)
    section = _resolve_paths(dict(section), bases)
    section["checkpoint"] = str(checkpoint)
    _check_capability(MODELS.get(section.get("arch")), str(checkpoint), require)
    init = section.get("init_checkpoint")
    if init and not Path(init).exists():
        raise CheckpointError(
            f"{run_dir / 'config.yaml'}: model.init_checkpoint '{init}' (the weights this run started from, "
            "which supply its frozen tensors) is missing; restore it or point model.init_checkpoint at its new place"
        )
    _merge(section, _precision_overrides(precision, section))
    model = _build(section)
    run, datasets = _section(raw, "run"), _section(raw, "datasets")
    vis, txt = eval_processors(section, datasets)
    name = f"{run_dir.name}/{checkpoint.resolve().name}"
    return PretrainedModel(model, vis, txt, str(checkpoint), "run", name, dict(run.get("generation") or {}))


def _from_hf(source: str, precision: str | None, require: Capability | None) -> PretrainedModel:
    from lavis.models.blip2.stage2 import Blip2LLMBase
    from lavis.models.interop import from_hf

    _check_capability(Blip2LLMBase, source, require)  # HF BLIP-2 checkpoints are all stage-2 models
    model, vis, txt = from_hf(source, dtype=precision)
    return PretrainedModel(model, vis.get("eval"), txt.get("eval"), source, "hf", Path(source).name or source)


def _from_hub(repo_id: str, precision: str | None, require: Capability | None) -> PretrainedModel:
    """A hub repo in our layout (``convert --to ours``) or transformers' BLIP-2 / InstructBLIP one."""
    from lavis.models.interop.hub import hub_folder

    folder, layout = hub_folder(repo_id)
    loaded = _from_folder(folder, precision, require) if layout == "ours" else _from_hf(str(folder), precision, require)
    loaded.source, loaded.name = repo_id, repo_id
    return loaded


def _from_file(
    file: Path, config: str | os.PathLike | None, precision: str | None, require: Capability | None
) -> PretrainedModel:
    if file.suffix.lower() not in _WEIGHT_SUFFIXES:
        raise CheckpointError(f"'{file}': expected a weights file ({', '.join(_WEIGHT_SUFFIXES)}) or a model folder")
    if config is None:
        raise ConfigError(
            f"'{file}' holds weights, not the architecture: also give the config that built it "
            "(--config runs/X/config.yaml, configs/models/blip2_t5_instruct/flant5xl.yaml, or blip2_t5_instruct/flant5xl)"
        )
    section, datasets = _config_section(str(config))
    section["checkpoint"] = str(file)
    section["init_checkpoint"] = None
    _check_capability(MODELS.get(section.get("arch")), str(file), require)
    _merge(section, _precision_overrides(precision, section))
    model = _build(section)
    vis, txt = eval_processors(section, datasets)
    return PretrainedModel(model, vis, txt, str(file), "file", file.stem)


def _config_section(config: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The model section (and data sets) of a run/model YAML, or of ``arch/model_type``."""
    from omegaconf import OmegaConf

    import lavis.common  # noqa: F401

    path = Path(config)
    if not path.is_file():
        arch, sep, model_type = config.partition("/")
        if sep and arch in MODELS:
            return _to_dict(model_config(arch, model_type)), {}
        raise ConfigError(f"--config '{config}': no such YAML file, and not an arch/model_type pair")
    raw = OmegaConf.load(path)
    if "model" not in raw:
        raise ConfigError(f"{path}: expected a top-level 'model:' section")
    section = OmegaConf.to_container(raw.model, resolve=True)
    if "model_type" in section and section.get("arch") in MODELS:
        base = _to_dict(model_config(section["arch"], section["model_type"]))
        _merge(base, section)
        section = base
    datasets = _section(raw, "datasets")
    return _resolve_paths(dict(section), [Path.cwd(), path.parent]), datasets


def _section(raw: Any, key: str) -> dict[str, Any]:
    """``raw[key]`` of a loaded YAML as a plain dict (empty when absent)."""
    from omegaconf import OmegaConf

    value = raw.get(key)
    return dict(OmegaConf.to_container(value, resolve=True)) if OmegaConf.is_config(value) else {}


def _build(section: Mapping[str, Any]) -> BaseModel:
    arch = section.get("arch")
    model_cls = MODELS.get(arch)
    return model_cls.from_config(model_cls.parse_config(dict(section), "model"))


# ---- processors -----------------------------------------------------------------------------
def eval_processors(section: Mapping[str, Any], datasets: Mapping[str, Any]) -> tuple[Any, Any]:
    """Eval processors: the model's ``preprocess`` section, else the first data set's, else the
    pathology defaults at the encoder's image size."""
    preprocess = dict(section.get("preprocess") or {})
    for dataset in datasets.values():
        if not isinstance(dataset, Mapping):
            continue
        for kind in ("vis_processor", "text_processor"):
            if not (preprocess.get(kind) or {}).get("eval") and (dataset.get(kind) or {}).get("eval"):
                preprocess[kind] = {"eval": dataset[kind]["eval"]}
    size = int((section.get("vision") or {}).get("image_size") or 224)
    preprocess.setdefault("vis_processor", {}).setdefault("eval", {"name": "pathology_image_eval", "image_size": size})
    preprocess.setdefault("text_processor", {}).setdefault("eval", {"name": "pathology_question"})
    vis, txt = load_preprocess({k: {"eval": v["eval"]} for k, v in preprocess.items()})
    return vis["eval"], txt["eval"]


# ---- helpers --------------------------------------------------------------------------------
def _check_capability(model_cls: type, source: str, require: Capability | None) -> None:
    """Refuse a model that cannot do what the caller needs, before its weights are read."""
    arch = getattr(model_cls, "__name__", str(model_cls))
    if require == "answer" and not hasattr(model_cls, "bridge"):
        raise CheckpointError(
            f"'{source}' is a stage-1 model ({arch}: image-text alignment, no language model), so it cannot "
            "answer questions. It can score tiles against a text with `python -m lavis.slides --mode retrieval`, "
            "and it is the starting point of stage 2 (`python train.py --cfg-path "
            f"configs/train/stage2_clover_flant5xl.yaml --options model.init_checkpoint={source}`)"
        )
    if require == "retrieval" and not hasattr(model_cls, "itc_similarity"):
        raise CheckpointError(
            f"'{source}' ({arch}) has no image-text similarity head: retrieval needs a stage-1 model (arch blip2, "
            "e.g. runs/stage1_quilt1m/checkpoints/last); use --mode closed or open with this one"
        )


def _check_provenance(loaded: PretrainedModel) -> None:
    """Errors for frozen parts that differ from those the checkpoint was trained with; warnings logged."""
    from lavis.common.provenance import compare_provenance, read_provenance
    from lavis.models.provenance import describe_model

    recorded = read_provenance(loaded.source)
    if recorded is None:
        return
    differences = compare_provenance(recorded, describe_model(loaded.model))
    for difference in differences:
        if not difference.error:
            logger.warning("%s: %s", loaded.source, difference)
    errors = [str(d) for d in differences if d.error]
    if errors:
        raise CheckpointError(
            f"'{loaded.source}' was trained with other frozen parts than the ones configured now: "
            + "; ".join(errors)
            + ". Point the config at the parts it was trained with (or pass check_provenance=False / "
            "--no-provenance-check if you really mean to)"
        )


def _precision_overrides(precision: str | None, section: Mapping[str, Any]) -> dict[str, Any]:
    """Config overrides that put the frozen encoder (and the LLM, when there is one) in ``precision``."""
    if precision is None:
        return {}
    out: dict[str, Any] = {"vision": {"precision": precision}}
    if "llm" in section:
        out["llm"] = {"dtype": precision}
    return out


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> None:
    """Nested mappings merge key by key; anything else replaces."""
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        else:
            base[key] = value


def run_path_bases(run_dir: Path) -> list[Path]:
    """Where a run's relative paths may start: the directory it was launched from (recorded in
    run_info.json), the current one, then the run folder and its parents."""
    bases = []
    info = run_dir / "run_info.json"
    if info.is_file():
        try:
            cwd = json.loads(info.read_text()).get("cwd")
        except (OSError, ValueError):
            cwd = None
        if cwd:
            bases.append(Path(cwd))
    bases.append(Path.cwd())
    bases.extend([run_dir, *run_dir.resolve().parents])
    return bases


def _resolve_paths(section: dict[str, Any], bases: list[Path]) -> dict[str, Any]:
    for keys in _PATH_KEYS:
        parent: Any = section
        for key in keys[:-1]:
            parent = parent.get(key) if isinstance(parent, Mapping) else None
        if not isinstance(parent, dict):
            continue
        value = parent.get(keys[-1])
        if not isinstance(value, str) or not value or Path(value).is_absolute() or Path(value).exists():
            continue
        for base in bases:
            if (base / value).exists():
                parent[keys[-1]] = str(base / value)
                break
    return section


def _folder_section(folder: Path) -> dict[str, Any]:
    import yaml

    raw = yaml.safe_load((folder / "config.yaml").read_text()) or {}
    return dict(raw.get("model") or {}) if isinstance(raw, dict) else {}


def _is_run_config(path: Path) -> bool:
    if not path.is_file():
        return False
    import yaml

    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, ValueError, yaml.YAMLError):  # unreadable or broken: not a run config
        return False
    return isinstance(raw, dict) and isinstance(raw.get("model"), dict) and "run" in raw


def _is_hf_blip2(config_json: Path) -> bool:
    from lavis.models.interop.hf_config import HF_MODEL_TYPES

    try:
        return json.loads(config_json.read_text()).get("model_type") in HF_MODEL_TYPES
    except (OSError, ValueError):
        return False


def _to_dict(cfg: Any) -> dict[str, Any]:
    from lavis.common.schema import to_dict

    return to_dict(cfg)
