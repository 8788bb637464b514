"""Load BLIP-2 / InstructBLIP / CLOVER weights into a model: our safetensors files and checkpoint
folders, and LAVIS ``.pth`` files (local, or a URL fetched once into the cache shared with the
vision encoders' weights: ``lavis.models.vision.weights``).

Strict about the trainable set (a missing trainable tensor is an error unless ``strict=False``);
tolerant about the rest: tensors of frozen parts that the file holds (``visual_encoder``, a
frozen ``ln_vision``) are loaded, tensors this model does not have (stage-1 heads in a stage-2
model, LAVIS's ``position_ids`` buffers) are skipped, and the report says which.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Mapping

import torch
from torch import nn

from lavis.common.errors import CheckpointError
from lavis.models.vision.weights import load_weights

logger = logging.getLogger(__name__)


@dataclasses.dataclass
class CheckpointReport:
    source: str
    loaded_trainable: list[str]
    loaded_frozen: list[str]
    # In the file but not in this model (e.g. ``Qformer.cls.*`` read by a stage-2 model).
    ignored: list[str]
    # Trainable tensors the file lacks (only possible with strict=False).
    missing_trainable: list[str]
    # Frozen tensors the file lacks: expected for the LLM (LAVIS checkpoints never hold it; it
    # comes from ``llm.name_or_path``) and for the encoder of trimmed checkpoints (``vision.pretrained``).
    missing_frozen: list[str] = dataclasses.field(default_factory=list)

    def summary(self) -> str:
        def head(names: list[str]) -> str:
            return f"{names[:8]}{' ...' if len(names) > 8 else ''}"

        kept = sorted({name.split(".")[0] for name in self.missing_frozen})
        return (
            f"{self.source}: loaded {len(self.loaded_trainable)} trainable and {len(self.loaded_frozen)} "
            f"frozen tensors; ignored {len(self.ignored)} not in this model {head(self.ignored)}; "
            f"{len(self.missing_trainable)} trainable tensors not in the file {head(self.missing_trainable)}; "
            f"{len(self.missing_frozen)} frozen tensors kept from their own source {kept}"
        )


_HINT = (
    "BLIP-2 checkpoints: a local .pth/.safetensors file, one of our checkpoint folders, or a LAVIS "
    "URL (cached under $LAVIS_CACHE_DIR once downloaded)."
)


# A sharded folder (an HF BLIP-2 checkpoint) is read through its index.
_WEIGHT_FILES = ["model.safetensors", "model.safetensors.index.json", "pytorch_model.bin", "pytorch_model.bin.index.json"]


def read_state_dict(source: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Tensors from a safetensors file, a checkpoint folder (sharded too), a ``.pth`` (state
    under ``model``) or a URL / hub id (fetched into the cache unless offline)."""
    return load_weights(str(source), _WEIGHT_FILES, "BLIP-2 checkpoint", _HINT)[0]


@torch.no_grad()
def load_state_into(
    model: nn.Module,
    state: Mapping[str, torch.Tensor] | Iterable[tuple[str, torch.Tensor]],
    source: str,
    strict: bool = True,
    missing_hint: str = "load it with strict=False to start from it anyway",
) -> CheckpointReport:
    """Copy ``state`` into ``model`` by name. ``state`` may be a lazy stream of (name, tensor)
    pairs, so a full-size conversion never holds a second copy of the weights. ``missing_hint``
    ends the error for a strict load that lacks trainable tensors (what the caller can do)."""
    targets = model.state_dict(keep_vars=True)
    trainable = {name for name, param in model.named_parameters() if param.requires_grad}
    # Tied weights appear under two names (e.g. the Q-Former LM decoder); either name counts.
    aliases: dict[int, set[str]] = {}
    for name, tensor in targets.items():
        aliases.setdefault(id(tensor), set()).add(name)
    covered: set[str] = set()
    loaded_trainable, loaded_frozen, ignored = [], [], []
    for key, value in state.items() if isinstance(state, Mapping) else state:
        target = targets.get(key)
        if target is None:
            ignored.append(key)
            continue
        if target.shape != value.shape:
            raise CheckpointError(
                f"{source}: '{key}' has shape {tuple(value.shape)}, the model expects {tuple(target.shape)}"
            )
        target.copy_(value.to(dtype=target.dtype, device=target.device))
        covered |= aliases[id(target)]
        (loaded_trainable if key in trainable or aliases[id(target)] & trainable else loaded_frozen).append(key)
    missing = sorted(trainable - covered)
    missing_frozen = sorted(set(targets) - covered - trainable)
    report = CheckpointReport(
        source, sorted(loaded_trainable), sorted(loaded_frozen), sorted(ignored), missing, missing_frozen
    )
    if missing and strict:
        raise CheckpointError(
            f"{source} lacks {len(missing)} trainable tensors of this model: {missing[:10]}"
            f"{' ...' if len(missing) > 10 else ''} ({missing_hint})"
        )
    logger.info("%s", report.summary())
    return report
