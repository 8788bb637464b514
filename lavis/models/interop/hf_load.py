"""``from_hf``: a Hugging Face ``Blip2ForConditionalGeneration`` / ``InstructBlipForConditionalGeneration``
checkpoint (folder or hub id) as the matching model of ours, with its processors.

The model is built from the checkpoint's own config.json (our ``blip2_t5``, ``blip2_llm``,
``blip2_t5_instruct`` or ``blip2_vicuna_instruct``), then every tensor is streamed from the
weight files into it, one at a time, so a 7B conversion never holds two copies. Tokenizers come
from the same folder: the LM's at its top, InstructBLIP's Q-Former tokenizer in ``qformer_tokenizer/``.

Same outputs, position for position: HF puts the query outputs at the ``<image>`` placeholder
tokens its processor writes before the text (``[<image> x 32; BOS + prompt]`` for decoder-only
LMs, ``[<image> x 32; prompt + EOS]`` for T5); we prepend the queries to the same tokens, which
is the same sequence. Ours pads a batch to the side each step needs and masks padding.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from lavis.common.conversation import ConversationContract
from lavis.common.errors import CheckpointError, WeightsNotFoundError
from lavis.models.api import load_preprocess
from lavis.models.base_model import MODELS
from lavis.models.blip2.checkpoint import load_state_into
from lavis.models.blip2.stage2 import Blip2LLMBase
from lavis.models.interop.hf_config import (
    QFORMER_TOKENIZER_DIR,
    arch_for,
    dtype_name,
    our_mapping,
    read_hf_config,
)
from lavis.models.interop.hf_keys import OurNames, hf_to_ours
from lavis.models.interop.hub import HF_CONFIG_KEY
from lavis.models.vision.weights import hub_repo_id, offline_mode, read_state_dict, weight_files

logger = logging.getLogger(__name__)

HF_WEIGHT_FILES = ("model.safetensors.index.json", "model.safetensors", "pytorch_model.bin.index.json", "pytorch_model.bin")
_HINT = (
    "A Hugging Face BLIP-2 / InstructBLIP checkpoint: a folder with config.json, the weights and the "
    "processor files (e.g. Salesforce/blip2-flan-t5-xl, Salesforce/instructblip-vicuna-7b)."
)
# What a snapshot needs: configs, tokenizers (sentencepiece / WordPiece / BPE), weights.
_SNAPSHOT_FILES = ["*.json", "*.model", "*.txt", "*.tiktoken", f"{QFORMER_TOKENIZER_DIR}/*"]


def from_hf(
    path_or_id: str | os.PathLike, device: str | torch.device = "cpu", dtype: str | torch.dtype | None = None
) -> tuple[Blip2LLMBase, dict[str, Any], dict[str, Any]]:
    """``(model, vis_processors, txt_processors)`` for an HF BLIP-2 / InstructBLIP checkpoint.

    ``dtype`` (bf16 / fp16 / fp32 or a torch dtype) is the precision of the frozen encoder and
    LLM; None keeps the checkpoint's. The Q-Former, queries and projection stay fp32. Processors
    are keyed by split (``train`` / ``eval``), as :func:`lavis.models.load_model_and_preprocess` returns them.
    """
    folder = resolve_hf_folder(str(path_or_id))
    config = read_hf_config(folder)
    model_cls = MODELS.get(arch_for(config))
    mapping = our_mapping(config, folder, dtype_name(dtype, config))
    if model_cls.LLM_KIND == "causal":
        mapping["llm"]["bos_token"] = prompt_start_token(_lm_tokenizer(folder))
    contract = getattr(config, HF_CONFIG_KEY, None)  # written by to_hf; absent: single-turn
    if contract and "conversation" in {f.name for f in dataclasses.fields(model_cls.Config)}:
        mapping["conversation"] = ConversationContract.from_dict(contract, f"{folder}/config.json {HF_CONFIG_KEY}").as_dict()
    cfg = model_cls.parse_config(mapping, "model")
    model = model_cls.from_config(cfg, load_weights=False, llm_config=config.text_config)
    load_hf_weights(model, folder, config)
    model = model.to(device).eval()
    _check_tokenizers(model, folder)
    vis_processors, txt_processors = load_preprocess(cfg.preprocess)
    return model, vis_processors, txt_processors


def resolve_hf_folder(source: str) -> Path:
    """A local folder for ``source`` (a folder, or a hub id fetched into / found in the hub cache)."""
    local = Path(source).expanduser()
    if local.is_dir():
        return local
    repo = hub_repo_id(source)
    if repo is None:
        raise WeightsNotFoundError(f"from_hf: no folder at '{source}' and it is not a hub id. {_HINT}")
    from huggingface_hub import snapshot_download

    try:
        folder = Path(snapshot_download(repo, allow_patterns=[*_SNAPSHOT_FILES, "*.safetensors"]))
        if not any(folder.glob("*.safetensors")):  # older repos hold only pytorch_model*.bin
            folder = Path(snapshot_download(repo, allow_patterns=[*_SNAPSHOT_FILES, "*.bin"]))
    except Exception as err:  # offline without a cached copy, unknown or gated repo, no network
        where = "the local hub cache (offline mode)" if offline_mode() else "the hub"
        raise WeightsNotFoundError(
            f"from_hf: '{repo}' could not be fetched from {where} ({type(err).__name__}: {err}). Download it "
            f"with `hf download {repo} --local-dir <folder>` and pass that folder. {_HINT}"
        ) from err
    return folder


def iter_tensors(files: list[Path]) -> Iterator[tuple[str, torch.Tensor]]:
    """(key, tensor) of every weight file, one tensor in memory at a time for safetensors."""
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                for key in handle.keys():
                    yield key, handle.get_tensor(key)
        else:
            yield from read_state_dict(file).items()


def load_hf_weights(model: Blip2LLMBase, folder: Path, config: Any) -> None:
    """Fill every tensor of ``model`` from the HF weights in ``folder``; anything missing is an error."""
    files, where = weight_files(str(folder), HF_WEIGHT_FILES, "HF BLIP-2 checkpoint", _HINT)
    report = load_state_into(model, hf_to_ours(iter_tensors(files), OurNames.of(model)), where, strict=False)
    missing = set(report.missing_trainable) | set(report.missing_frozen)  # all are errors here
    head = model.llm.get_output_embeddings()
    head_names = {name for name, value in model.state_dict(keep_vars=True).items() if value is head.weight}
    if missing and missing <= head_names and getattr(config.text_config, "tie_word_embeddings", False):
        # No separate head in the file: transformers ties it to the input embeddings (T5 always
        # in transformers 5), so the head is a copy of those.
        with torch.no_grad():
            head.weight.copy_(model.llm.get_input_embeddings().weight)
        missing = set()
    if missing:
        raise CheckpointError(
            f"{where} lacks {len(missing)} tensors of {type(model).__name__}: {sorted(missing)[:10]} - is the "
            "checkpoint complete (every shard present) and its config.json the one it was saved with?"
        )
    if report.ignored:
        logger.warning("%s: %d tensors have no place in %s: %s", where, len(report.ignored),
                       type(model).__name__, report.ignored[:10])


def prompt_start_token(tokenizer: Any) -> str | None:
    """The token HF's processor puts before a prompt, as our ``llm.bos_token`` (None: the
    tokenizer's BOS, which is what it puts there). InstructBLIP Vicuna's tokenizer starts
    prompts with ``</s>``, the BOS LAVIS trained it with."""
    with_special = tokenizer("a").input_ids
    plain = tokenizer("a", add_special_tokens=False).input_ids
    first = with_special[0] if with_special and with_special[0] != plain[0] else None
    if first is None:
        if tokenizer.bos_token_id is not None:
            logger.warning(
                "the LM tokenizer adds no BOS; this model will still put %r first (HF's processor puts nothing)",
                tokenizer.bos_token,
            )
        return None
    return None if first == tokenizer.bos_token_id else tokenizer.convert_ids_to_tokens(first)


def _lm_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(str(folder))
    except (OSError, ValueError) as err:
        raise _no_tokenizer(folder, err) from err


def _no_tokenizer(folder: Path, err: Exception) -> WeightsNotFoundError:
    return WeightsNotFoundError(
        f"from_hf: '{folder}' lacks its tokenizer files ({err}). Save the processor too: "
        "`processor.save_pretrained(folder)` (InstructBLIP keeps the Q-Former's in qformer_tokenizer/)."
    )


def _check_tokenizers(model: Blip2LLMBase, folder: Path) -> None:
    """Load the LM (and Q-Former) tokenizers now, so a folder without them fails here, clearly."""
    try:
        vocab = len(model.bridge.tokenizer)
        if model.QFORMER_TEXT:
            _ = model.tokenizer
    except (OSError, ValueError, WeightsNotFoundError) as err:
        raise _no_tokenizer(folder, err) from err
    rows = model.llm.get_input_embeddings().weight.shape[0]
    if vocab > rows:  # harmless unless a prompt contains one of the extra tokens
        logger.warning("%s: the tokenizer has %d tokens, the language model %d embedding rows", folder, vocab, rows)
