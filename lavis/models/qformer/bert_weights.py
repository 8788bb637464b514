"""Start a Q-Former from a BERT checkpoint (bert-base-uncased, or any BERT-family folder) and
build its WordPiece tokenizer with the ``[DEC]`` BOS token.

BERT's text feed-forward also initialises the query feed-forward (``*_query``), as BLIP-2 does.
BERT adds ``token_type_embeddings[0]`` to every token; the Q-Former has no token types, so that
row is folded into the position embeddings, which keeps text-only outputs identical to BERT's.
(LAVIS drops the row instead; trained BLIP-2 checkpoints carry their own position embeddings,
so this only affects a Q-Former freshly initialised from BERT.)
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from lavis.common.errors import CheckpointError, WeightsNotFoundError
from lavis.models.qformer.config import QFormerConfig
from lavis.models.qformer.model import QFormer
from lavis.models.vision.weights import read_state_dict as read_weights

logger = logging.getLogger(__name__)

_WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
_CONFIG_CHECKS = {
    "hidden_size": "hidden_size",
    "num_hidden_layers": "num_layers",
    "num_attention_heads": "num_heads",
    "intermediate_size": "intermediate_size",
    "max_position_embeddings": "max_position_embeddings",
}


def _missing(name_or_path: str, what: str, err: Exception | None = None) -> WeightsNotFoundError:
    reason = f" ({err})" if err else ""
    return WeightsNotFoundError(
        f"{what} '{name_or_path}' is not available locally{reason}. Download it once with "
        f"`huggingface-cli download {name_or_path}` (with network access), or set "
        f"model.qformer.pretrained / model.qformer.tokenizer to a local folder holding "
        f"config.json + model.safetensors (weights) or vocab.txt (tokenizer)."
    )


def _resolve_file(name_or_path: str, filename: str) -> Path | None:
    local = Path(name_or_path)
    if local.is_dir():
        return local / filename if (local / filename).is_file() else None
    from transformers.utils import cached_file

    try:
        found = cached_file(name_or_path, filename, _raise_exceptions_for_missing_entries=False)
    except OSError:
        return None
    return Path(found) if found else None


def read_bert_state(name_or_path: str) -> tuple[dict[str, torch.Tensor], object]:
    """(state dict with ``bert.``/``cls.`` prefixes normalised, transformers BertConfig)."""
    from transformers import BertConfig

    try:
        config = BertConfig.from_pretrained(name_or_path)
    except OSError as err:
        raise _missing(name_or_path, "BERT checkpoint", err) from None
    for filename in _WEIGHT_FILES:
        file = _resolve_file(name_or_path, filename)
        if file is None:
            continue
        state = {}
        for key, value in read_weights(file).items():
            key = key.removeprefix("bert.")
            if not key.startswith("cls."):
                key = f"bert.{key}"
            state[key] = value
        return state, config
    raise _missing(name_or_path, "BERT weights")


def _check_config(cfg: QFormerConfig, bert_config: object, source: str) -> None:
    for theirs, ours in _CONFIG_CHECKS.items():
        if theirs == "num_hidden_layers" and cfg.num_layers < bert_config.num_hidden_layers:
            # A shallower Q-Former starts from BERT's first layers (a cheap CPU-size model).
            logger.info("Q-Former uses the first %d of %d BERT layers of '%s'", cfg.num_layers,
                        bert_config.num_hidden_layers, source)
            continue
        if getattr(bert_config, theirs) != getattr(cfg, ours):
            raise CheckpointError(
                f"BERT checkpoint '{source}' has {theirs}={getattr(bert_config, theirs)} but "
                f"model.qformer.{ours}={getattr(cfg, ours)}; make the Q-Former config match the checkpoint"
            )
    if bert_config.vocab_size > cfg.vocab_size:
        raise CheckpointError(
            f"BERT checkpoint '{source}' has vocab_size={bert_config.vocab_size}, more than "
            f"model.qformer.vocab_size={cfg.vocab_size}"
        )


@torch.no_grad()
def load_bert_weights(qformer: QFormer, name_or_path: str) -> list[str]:
    """Copy BERT's weights into ``qformer``; returns the Q-Former keys left at their init."""
    state, bert_config = read_bert_state(name_or_path)
    _check_config(qformer.config, bert_config, name_or_path)
    if "bert.embeddings.token_type_embeddings.weight" in state and "bert.embeddings.position_embeddings.weight" in state:
        state["bert.embeddings.position_embeddings.weight"] = (
            state["bert.embeddings.position_embeddings.weight"] + state["bert.embeddings.token_type_embeddings.weight"][0]
        )
    targets = qformer.state_dict()
    initialised: set[int] = set()
    for key, target in targets.items():
        source_key = key.replace("_query.", ".")  # the query FFN starts as a copy of the text FFN
        value = state.get(source_key)
        if value is None:
            continue
        if value.shape != target.shape:
            if value.dim() >= 1 and value.shape[1:] == target.shape[1:] and value.shape[0] < target.shape[0]:
                target[: value.shape[0]].copy_(value)  # vocabulary rows; [DEC] keeps its init
            else:
                raise CheckpointError(
                    f"BERT checkpoint '{name_or_path}': '{source_key}' has shape {tuple(value.shape)}, "
                    f"the Q-Former's '{key}' has {tuple(target.shape)}"
                )
        else:
            target.copy_(value)
        initialised.add(target.data_ptr())
    # Named parameters, not state-dict keys: the tied LM decoder is loaded with the embeddings.
    left = sorted(name for name, param in qformer.named_parameters() if param.data_ptr() not in initialised)
    logger.info("Q-Former initialised from BERT '%s'; %d tensors kept their init", name_or_path, len(left))
    return left


def load_qformer_tokenizer(name_or_path: str, truncation_side: str = "right"):
    """bert-base-uncased's WordPiece tokenizer plus ``[DEC]`` as BOS (id 30522)."""
    from transformers import BertTokenizer

    try:
        tokenizer = BertTokenizer.from_pretrained(name_or_path, truncation_side=truncation_side)
    except OSError as err:
        raise _missing(name_or_path, "Q-Former tokenizer", err) from None
    tokenizer.add_special_tokens({"bos_token": "[DEC]"})
    return tokenizer
