"""``to_hf``: write one of our stage-2 models as a Hugging Face checkpoint folder that
``Blip2ForConditionalGeneration`` / ``InstructBlipForConditionalGeneration.from_pretrained`` loads
(with ``AutoProcessor.from_pretrained`` for its processor) and that reproduces our logits.

The HF model's parameter list comes from building it on the meta device (no memory); each of its
keys is filled from ours through the same map ``from_hf`` uses (:mod:`lavis.models.interop.hf_keys`),
so the two directions cannot drift apart.

HF marks image positions with an ``<image>`` token the LM tokenizer must know. It is added to
the tokenizer; when the LM has no spare embedding row for it (LLaMA/Vicuna), one row is appended:
its input embedding is never read (HF overwrites image positions), and its output row is the
mean of the others, so its logit is the mean logit - never the greedy choice - and every other
logit is unchanged.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import torch

from lavis.common.conversation import ConversationContract
from lavis.common.errors import CheckpointError, ConfigError
from lavis.common.image_norm import CLIP_MEAN, CLIP_STD
from lavis.models.blip2.stage2 import Blip2LLMBase
from lavis.models.interop.hf_config import hf_config_for
from lavis.models.interop.hf_keys import OurNames, join_for_hf, our_keys_for
from lavis.models.interop.hub import HF_CONFIG_KEY, conversation_of
from lavis.models.llm.loading import load_llm_tokenizer

logger = logging.getLogger(__name__)

IMAGE_TOKEN = "<image>"


def to_hf(
    model: Blip2LLMBase, out_dir: str | os.PathLike, max_shard_size: str | int = "5GB",
    conversation: ConversationContract | None = None,
) -> Path:
    """Write ``model`` (weights in their current dtypes, config, tokenizer(s), processor) to ``out_dir``;
    ``conversation`` (default: the model config's, else single-turn) goes into config.json."""
    from huggingface_hub import save_torch_state_dict

    if not isinstance(model, Blip2LLMBase):
        raise ConfigError(
            f"to_hf exports stage-2 models (blip2_t5, blip2_llm, blip2_t5_instruct, blip2_vicuna_instruct); "
            f"got {type(model).__name__}"
        )
    out = Path(out_dir)
    tokenizer = export_tokenizer(model)
    image_token_index = tokenizer.convert_tokens_to_ids(IMAGE_TOKEN)
    rows = model.llm.get_input_embeddings().weight.shape[0]
    vocab = max(rows, image_token_index + 1)
    config = hf_config_for(model, image_token_index, vocab)
    config.dtype = model.llm.get_input_embeddings().weight.dtype
    setattr(config, HF_CONFIG_KEY, (conversation or conversation_of(model)).as_dict())  # read back by from_hf
    state = hf_state_dict(model, config)
    out.mkdir(parents=True, exist_ok=True)
    save_torch_state_dict(state, out, max_shard_size=max_shard_size)
    config.save_pretrained(out)
    export_processor(model, tokenizer, config).save_pretrained(out)
    logger.info("wrote %s (%s, %d tensors) to %s", type(config).__name__, config.text_config.model_type, len(state), out)
    return out


def hf_model_class(config: Any) -> type:
    from transformers import Blip2ForConditionalGeneration, InstructBlipForConditionalGeneration

    return InstructBlipForConditionalGeneration if config.model_type == "instructblip" else Blip2ForConditionalGeneration


def hf_state_dict(model: Blip2LLMBase, config: Any) -> dict[str, torch.Tensor]:
    """Every tensor the HF model holds, under its name, from ours (tied names written once)."""
    with torch.device("meta"):
        reference = hf_model_class(config)(config)
    ours = model.state_dict()
    names = OurNames.of(model)
    embeddings = model.llm.get_input_embeddings().weight
    head = model.llm.get_output_embeddings().weight
    state: dict[str, torch.Tensor] = {}
    written: set[tuple[int, tuple[int, ...]]] = set()
    for hf_key, expected in reference.state_dict().items():
        targets = our_keys_for(hf_key, names)
        absent = [t for t in targets if t not in ours]
        if not targets or absent:
            raise CheckpointError(
                f"the HF model's '{hf_key}' has no source in {type(model).__name__} ({absent or 'no mapping'})"
            )
        parts = [ours[t] for t in targets]
        identity = (parts[0].data_ptr(), tuple(parts[0].shape))
        if len(parts) == 1 and identity in written:
            continue  # a tied alias (T5's encoder/decoder embed_tokens, a tied head): one copy
        written.add(identity)
        value = join_for_hf(parts)
        if value.data_ptr() in (embeddings.data_ptr(), head.data_ptr()) and value.shape[0] < expected.shape[0]:
            value = _grow_rows(value, expected.shape[0])
        if tuple(value.shape) != tuple(expected.shape):
            raise CheckpointError(
                f"'{hf_key}' (from {targets}) has shape {tuple(value.shape)}, HF expects {tuple(expected.shape)}"
            )
        state[hf_key] = value.detach().contiguous()
    return state


def _grow_rows(matrix: torch.Tensor, rows: int) -> torch.Tensor:
    """Append rows equal to the mean row (see the module docstring for why the mean)."""
    mean = matrix.float().mean(dim=0, keepdim=True).to(matrix.dtype)
    return torch.cat([matrix, mean.expand(rows - matrix.shape[0], -1)], dim=0)


def export_tokenizer(model: Blip2LLMBase) -> Any:
    """A fresh copy of the LM tokenizer with ``<image>`` added, set up to produce the token ids
    our model reads (the configured BOS of a decoder-only LM)."""
    from transformers import AddedToken

    tokenizer = load_llm_tokenizer(model.cfg.llm)  # loaded anew on each call: ours to modify
    if IMAGE_TOKEN not in tokenizer.get_vocab():
        tokenizer.add_tokens([AddedToken(IMAGE_TOKEN, normalized=False, special=True)], special_tokens=True)
    if model.LLM_KIND == "causal" and model.bridge.bos_id is not None:
        _start_with(tokenizer, model.bridge.bos_id)
    return tokenizer


def _start_with(tokenizer: Any, bos_id: int) -> None:
    """Make the tokenizer put our BOS first (InstructBLIP Vicuna's ``</s>``, ``llm.bos_token``),
    so HF's processor builds the very ids our model reads."""
    if tokenizer("a").input_ids[0] == bos_id:
        return
    if hasattr(tokenizer, "update_post_processor"):  # tokenizers-backed: BOS comes from a template
        tokenizer.bos_token = tokenizer.convert_ids_to_tokens(bos_id)
        tokenizer.add_bos_token = True  # the setter rebuilds the template with the new BOS
    if tokenizer("a").input_ids[0] != bos_id:
        logger.warning(
            "the exported tokenizer does not start a prompt with this model's BOS (id %d): HF's processor "
            "input will differ from ours unless the prompt ids are built by hand", bos_id,
        )


def export_processor(model: Blip2LLMBase, tokenizer: Any, config: Any) -> Any:
    """``Blip2Processor`` / ``InstructBlipProcessor`` matching our eval image processor."""
    from PIL import Image
    from transformers import Blip2Processor, BlipImageProcessor, InstructBlipProcessor

    from lavis.models.qformer import load_qformer_tokenizer

    image = dict((model.cfg.preprocess or {}).get("vis_processor", {}).get("eval") or {})
    size = int(image.get("image_size", config.vision_config.image_size))
    image_processor = BlipImageProcessor(
        size={"height": size, "width": size},
        image_mean=list(image.get("mean", CLIP_MEAN)),
        image_std=list(image.get("std", CLIP_STD)),
        resample=Image.Resampling.BICUBIC,
        do_convert_rgb=True,
    )
    queries = config.num_query_tokens
    if config.model_type != "instructblip":
        return Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=queries)
    return InstructBlipProcessor(
        image_processor=image_processor,
        tokenizer=tokenizer,
        qformer_tokenizer=load_qformer_tokenizer(model.cfg.qformer.tokenizer),
        num_query_tokens=queries,
    )
