"""Load the frozen language model and its tokenizer from a local folder or a hub id.

Weights load straight into the target dtype (bf16 by default): transformers builds the model on
the meta device and fills it from the checkpoint, so no fp32 copy of a 3B/7B model is made.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from typing import Any, Literal

import torch

from lavis.common.errors import ConfigError, WeightsNotFoundError

# Precision name -> dtype, for ``model.llm.dtype`` and ``model.vision.precision`` (the vision
# encoders' ``PRECISIONS`` is this table).
DTYPES: dict[str, torch.dtype] = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
LLMKind = Literal["seq2seq", "causal"]


@dataclasses.dataclass
class LLMConfig:
    """``model.llm``: the frozen language model."""

    # Local folder or hub id (google/flan-t5-xl, lmsys/vicuna-7b-v1.1, a tiny test folder).
    name_or_path: str
    # bf16 | fp16 | fp32: the dtype its weights are kept and run in.
    dtype: str = "bf16"
    # Attributes set on the transformers config before building (LAVIS runs FlanT5 with
    # dense_act_fn=gelu, and its released checkpoints were trained that way).
    config_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    # Decoder-only: the token put before the instruction. None = the tokenizer's BOS. LAVIS's
    # InstructBLIP Vicuna was trained with "</s>" there.
    bos_token: str | None = None

    def validate(self) -> None:
        if self.dtype not in DTYPES:
            raise ConfigError(f"'dtype' must be one of {sorted(DTYPES)}, got {self.dtype!r}")


def parse_dtype(name: str, where: str) -> torch.dtype:
    try:
        return DTYPES[name]
    except KeyError:
        raise ConfigError(f"config key '{where}': {name!r} is not one of {sorted(DTYPES)}") from None


def precision(device_type: str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    """Run a frozen component in its own precision, whatever autocast the caller has open.

    Half precision: autocast to that dtype (LayerNorm/softmax stay fp32 by autocast's policy).
    fp32: autocast off, so an outer bf16/fp16 context does not cast the component's matmuls.
    """
    if dtype == torch.float32:
        return torch.autocast(device_type=device_type, enabled=False)
    return torch.autocast(device_type=device_type, dtype=dtype)


def _not_found(name_or_path: str, what: str, err: Exception) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"{what} '{name_or_path}' is not available locally ({err}). Download it once with "
        f"`huggingface-cli download {name_or_path} --local-dir <folder>` (with network access) and "
        f"set model.llm.name_or_path to that folder."
    )


def llm_config(cfg: LLMConfig, base: Any | None = None) -> Any:
    """The transformers config to build: ``base`` (given) or the one at ``name_or_path``, plus overrides."""
    if base is None:
        from transformers import AutoConfig

        try:
            base = AutoConfig.from_pretrained(cfg.name_or_path)
        except OSError as err:
            raise _not_found(cfg.name_or_path, "language model config", err) from None
    config = copy.deepcopy(base)
    for key, value in cfg.config_overrides.items():
        if not hasattr(config, key):
            raise ConfigError(
                f"config key 'model.llm.config_overrides.{key}': {type(config).__name__} has no attribute '{key}'"
            )
        setattr(config, key, value)
    return config


def load_llm(cfg: LLMConfig, kind: LLMKind, load_weights: bool = True, arch_config: Any | None = None):
    """Build the frozen LLM (``eval`` mode, ``requires_grad=False``) in ``cfg.dtype``.

    ``load_weights=False`` builds it from ``arch_config`` (or the config at ``name_or_path``)
    with random weights: cheap under ``torch.device("meta")`` for parameter counting.
    """
    from transformers import AutoModelForCausalLM, AutoModelForSeq2SeqLM

    auto = AutoModelForSeq2SeqLM if kind == "seq2seq" else AutoModelForCausalLM
    dtype = parse_dtype(cfg.dtype, "model.llm.dtype")
    config = llm_config(cfg, arch_config)
    if load_weights:
        try:
            model = auto.from_pretrained(cfg.name_or_path, config=config, dtype=dtype)
        except OSError as err:
            raise _not_found(cfg.name_or_path, "language model weights", err) from None
    else:
        model = auto.from_config(config, dtype=dtype)
        _untie_head_like_checkpoint(model, config)
    model.requires_grad_(False)
    return model.eval()


def _untie_head_like_checkpoint(model, config: Any) -> None:
    """Give the output head its own weights where the released checkpoints do (FlanT5 / T5 v1.1).

    transformers 5 always builds T5 with the head tied to the embeddings (``scale_decoder_outputs
    = False`` is what remains of ``tie_word_embeddings: false``) and unties it only when loading a
    checkpoint that holds a separate head; a weightless build must untie it itself to have the
    real model's parameters.
    """
    separate = getattr(config, "scale_decoder_outputs", None) is False or not getattr(config, "tie_word_embeddings", True)
    head, embeddings = model.get_output_embeddings(), model.get_input_embeddings()
    if separate and head is not None and head.weight is embeddings.weight:
        head.weight = torch.nn.Parameter(embeddings.weight.detach().clone())


def load_llm_tokenizer(cfg: LLMConfig):
    """The LLM's tokenizer; one without a pad token pads with its unk (or eos) token.

    Padding never reaches the loss or the attention (both use the attention mask), so borrowing
    an existing token avoids resizing the frozen embedding matrix as LAVIS does with ``[PAD]``.
    """
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(cfg.name_or_path)
    except OSError as err:
        raise _not_found(cfg.name_or_path, "language model tokenizer", err) from None
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token if tokenizer.unk_token is not None else tokenizer.eos_token
    if cfg.bos_token is not None and tokenizer.convert_tokens_to_ids(cfg.bos_token) in (None, tokenizer.unk_token_id):
        if cfg.bos_token != tokenizer.unk_token:
            raise ConfigError(f"config key 'model.llm.bos_token': {cfg.bos_token!r} is not in the tokenizer's vocabulary")
    return tokenizer
