"""Tiny Hugging Face BLIP-2 / InstructBLIP checkpoints built with transformers' own classes.

Each variant is saved the way users get them: ``save_pretrained`` of the model and of its
processor (LM tokenizer with ``<image>``, ``BlipImageProcessor``, InstructBLIP's Q-Former
tokenizer from bert-base-uncased's real vocabulary). Variants differ where loaders can go wrong:
tied vs separate LM heads, a T5 head stored separately as transformers 4 saved it, grouped-query
attention, a sharded checkpoint, a ``</s>`` BOS (InstructBLIP Vicuna), cross-attention in every layer, and
OPT (as in Salesforce/blip2-opt-*) besides T5 and LLaMA.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ..conftest import CORPUS

TEXTS = CORPUS * 5
VARIANTS = ("blip2-t5", "blip2-llama", "blip2-opt", "instructblip-t5", "instructblip-llama")
ARCH = {
    "blip2-t5": "blip2_t5",
    "blip2-llama": "blip2_llm",
    "blip2-opt": "blip2_llm",
    "instructblip-t5": "blip2_t5_instruct",
    "instructblip-llama": "blip2_vicuna_instruct",
}
NUM_QUERIES = 8
IMAGE_SIZE = 56


def _text_config(lm: str, tokenizer, tied: bool):
    from transformers import LlamaConfig, OPTConfig, T5Config

    if lm == "opt":  # Salesforce/blip2-opt-*: learned positions, ReLU, pre-norm decoder
        return OPTConfig(
            vocab_size=len(tokenizer), hidden_size=64, ffn_dim=128, num_hidden_layers=2, num_attention_heads=4,
            word_embed_proj_dim=64, max_position_embeddings=256, bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id, tie_word_embeddings=tied,
        )
    if lm == "t5":
        return T5Config(
            vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2, num_decoder_layers=2,
            num_heads=4, feed_forward_proj="gated-gelu", tie_word_embeddings=tied,
            pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id,
            decoder_start_token_id=tokenizer.pad_token_id,
        )
    return LlamaConfig(
        vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=4 if tied else 2, tie_word_embeddings=tied,
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
    )


def randomise(model: torch.nn.Module, seed: int, std: float = 0.1) -> None:
    """Every weight random (HF's init leaves the queries at zero and the vision tower at 1e-10)."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            noise = torch.randn(param.shape, generator=generator)
            is_norm_scale = "norm" in name.lower() and name.endswith("weight")
            param.copy_(1 + std * noise if is_norm_scale else std * noise)


def _write_separate_t5_head(folder: Path, seed: int) -> None:
    """transformers 4 saved FlanT5's untied head (``language_model.lm_head.weight``); 5 ties it."""
    from safetensors.torch import load_file, save_file

    file = folder / "model.safetensors"
    state = load_file(str(file))
    shared = state["language_model.shared.weight"]
    generator = torch.Generator().manual_seed(seed)
    state["language_model.lm_head.weight"] = 0.1 * torch.randn(shared.shape, generator=generator)
    save_file(state, str(file), metadata={"format": "pt"})


def build_hf_checkpoint(folder: Path, variant: str, bert_dir: Path, seed: int = 0) -> Path:
    from transformers import (
        Blip2Config,
        Blip2ForConditionalGeneration,
        Blip2Processor,
        BlipImageProcessor,
        InstructBlipConfig,
        InstructBlipForConditionalGeneration,
        InstructBlipProcessor,
    )

    from lavis.models.llm.tiny import train_sentencepiece
    from lavis.models.qformer import load_qformer_tokenizer

    family, lm = variant.split("-")
    tokenizer = train_sentencepiece(TEXTS, folder, "t5" if lm == "t5" else "llama", vocab_size=128)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.unk_token
    if variant == "instructblip-llama":  # as HF's InstructBLIP Vicuna: prompts start with "</s>"
        tokenizer.bos_token = "</s>"
        tokenizer.add_bos_token = True  # rebuilds the template that writes it
    image_processor = BlipImageProcessor(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    if family == "instructblip":
        processor = InstructBlipProcessor(
            image_processor=image_processor, tokenizer=tokenizer,
            qformer_tokenizer=load_qformer_tokenizer(str(bert_dir)), num_query_tokens=NUM_QUERIES,
        )
    else:
        processor = Blip2Processor(image_processor=image_processor, tokenizer=tokenizer, num_query_tokens=NUM_QUERIES)
    tied = family == "blip2"
    config_cls, model_cls = (
        (InstructBlipConfig, InstructBlipForConditionalGeneration)
        if family == "instructblip"
        else (Blip2Config, Blip2ForConditionalGeneration)
    )
    config = config_cls(
        vision_config={
            "hidden_size": 32, "intermediate_size": 139, "num_hidden_layers": 2, "num_attention_heads": 2,
            "image_size": IMAGE_SIZE, "patch_size": 14,
        },
        qformer_config={
            "hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "intermediate_size": 128,
            "vocab_size": 30523, "cross_attention_frequency": 1 if lm == "llama" else 2,
        },
        text_config=_text_config(lm, tokenizer, tied).to_dict(),
        num_query_tokens=NUM_QUERIES,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
    )
    torch.manual_seed(seed)
    model = model_cls(config)
    randomise(model, seed)
    sharded = variant == "blip2-llama"
    model.save_pretrained(folder, max_shard_size="200KB" if sharded else "5GB")
    processor.save_pretrained(folder)
    if variant == "instructblip-t5":
        _write_separate_t5_head(folder, seed + 1)
    return folder


# ---- LAVIS layout ----------------------------------------------------------------------------
LLM_PREFIXES = ("t5_model.", "llm_model.")


def lavis_state(model: torch.nn.Module, vision: bool = True) -> dict[str, torch.Tensor]:
    """``model``'s tensors as a LAVIS checkpoint holds them: no LLM (LAVIS takes it from the hub),
    EVA's 40th block and final norm/head as ``eva_vit_g.pth`` holds them, the ``position_ids`` buffer."""
    state = {k: v.clone() for k, v in model.state_dict().items() if not k.startswith(LLM_PREFIXES)}
    if not vision:  # InstructBLIP's "_trimmed" releases: trainable parts and ln_vision only
        return {k: v for k, v in state.items() if not k.startswith("visual_encoder.")}
    depth = len(model.visual_encoder.blocks)
    generator = torch.Generator().manual_seed(7)
    for key, value in list(state.items()):
        if key.startswith(f"visual_encoder.blocks.{depth - 1}."):  # the block BLIP-2 drops
            state[key.replace(f".{depth - 1}.", f".{depth}.")] = torch.randn(value.shape, generator=generator)
    width = model.visual_encoder.num_features
    state["visual_encoder.norm.weight"] = torch.ones(width)
    state["visual_encoder.head.weight"] = torch.randn(4, width, generator=generator)
    if "Qformer.bert.embeddings.word_embeddings.weight" in state:
        state["Qformer.bert.embeddings.position_ids"] = torch.arange(512)[None]
    return state


def save_lavis(path, state) -> str:
    """A ``.pth`` as LAVIS writes it: the state under ``model`` beside optimizer state and config."""
    torch.save({"model": state, "optimizer": {"state": {}}, "config": {"run": {"lr": 1e-5}}, "epoch": 4}, path)
    return str(path)


@pytest.fixture(scope="session")
def hf_checkpoint(tmp_path_factory, minilm_dir):
    """``hf_checkpoint(variant)`` -> folder of a saved tiny HF checkpoint (built once per session)."""
    cache: dict[str, Path] = {}

    def get(variant: str) -> Path:
        if variant not in cache:
            cache[variant] = build_hf_checkpoint(tmp_path_factory.mktemp(variant), variant, minilm_dir)
        return cache[variant]

    return get


@pytest.fixture(scope="session")
def load_hf():
    """``load_hf(folder)`` -> the HF model class's ``from_pretrained`` of ``folder``, in eval mode,
    asserting nothing was missing, unexpected or mis-shaped."""

    def load(folder: Path):
        from transformers import AutoConfig

        from lavis.models.interop.hf_export import hf_model_class

        model, info = hf_model_class(AutoConfig.from_pretrained(folder)).from_pretrained(folder, output_loading_info=True)
        problems = {k: v for k, v in info.items() if v}
        assert not problems, problems
        return model.eval()

    return load


@pytest.fixture
def samples():
    """Two images with prompts and answers of different lengths (so ours pads the batch)."""
    generator = torch.Generator().manual_seed(0)
    return {
        "image": torch.randn(2, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator),
        "text_input": ["is there necrosis in this image", "describe the image in detail please"],
        "text_output": ["yes", "the tissue shows glands lined by columnar epithelium"],
    }
