"""Model sizes shared by every benchmark, and builders for our model and Hugging Face's
``InstructBlipForConditionalGeneration`` from one description, with random weights.

Both sides get the same vision layout (HF's InstructBLIP vision tower is the EVA-style ViT:
pre-norm blocks, q/v biases, GELU MLP, a final LayerNorm = our ``ln_vision``), the same Q-Former
dimensions, and literally the same transformers LM config; the same parts are frozen (vision,
its final norm, the LM) and kept in eval mode. Nothing is downloaded: tokenizers are made on the
spot (a WordPiece vocabulary file and a sentencepiece model trained on a few sentences).
"""

from __future__ import annotations

import dataclasses
import random
from pathlib import Path
from typing import Any, Literal

import torch

QFORMER_VOCAB = 30523  # bert-base-uncased + [DEC]
CORPUS = [
    "sheets of atypical cells with vesicular chromatin and prominent nucleoli",
    "what stain highlights the basement membrane here",
    "summarise the architecture of this biopsy",
    "dense collagen surrounds small nests of squamous cells",
    "the mucosa contains branching crypts and goblet cells",
    "caseating granulomas with multinucleated giant cells",
    "which compartment shows the strongest staining",
    "adipose tissue interrupted by fibrous septa",
    "present",
    "absent",
]


@dataclasses.dataclass(frozen=True)
class VisionSize:
    image_size: int
    patch_size: int
    width: int
    depth: int
    heads: int
    mlp_ratio: float

    @property
    def mlp(self) -> int:
        return int(self.width * self.mlp_ratio)  # what timm's EvaBlock builds

    @property
    def tokens(self) -> int:
        return 1 + (self.image_size // self.patch_size) ** 2


@dataclasses.dataclass(frozen=True)
class QFormerSize:
    queries: int
    hidden: int
    layers: int
    heads: int
    intermediate: int
    cross_attention_freq: int = 2


@dataclasses.dataclass(frozen=True)
class LMSize:
    kind: Literal["t5", "llama"]
    hidden: int
    ff: int
    layers: int
    heads: int
    vocab: int


@dataclasses.dataclass(frozen=True)
class ModelSize:
    name: str
    vision: VisionSize
    qformer: QFormerSize
    lm: LMSize

    @property
    def arch(self) -> str:
        return "blip2_t5_instruct" if self.lm.kind == "t5" else "blip2_vicuna_instruct"


EVA_G = VisionSize(224, 14, 1408, 39, 16, 4.3637)
QFORMER_BASE = QFormerSize(32, 768, 12, 12, 3072)
SIZES: dict[str, ModelSize] = {
    # our tiny.yaml dimensions
    "tiny": ModelSize(
        "tiny", VisionSize(56, 14, 32, 2, 2, 4.3637), QFormerSize(8, 64, 2, 4, 128), LMSize("t5", 64, 128, 2, 4, 512)
    ),
    "tiny_vicuna": ModelSize(
        "tiny_vicuna", VisionSize(56, 14, 32, 2, 2, 4.3637), QFormerSize(8, 64, 2, 4, 128),
        LMSize("llama", 64, 128, 2, 4, 512),
    ),
    # ViT-B/16 widths, the full 12-layer Q-Former, T5-base widths (FlanT5-base layout)
    "base": ModelSize("base", VisionSize(224, 16, 768, 12, 12, 4.0), QFORMER_BASE, LMSize("t5", 768, 2048, 12, 12, 32128)),
    # the released models: EVA ViT-g + FlanT5-XL, EVA ViT-g + Vicuna-7B
    "flant5xl": ModelSize("flant5xl", EVA_G, QFORMER_BASE, LMSize("t5", 2048, 5120, 24, 32, 32128)),
    "vicuna7b": ModelSize("vicuna7b", EVA_G, QFORMER_BASE, LMSize("llama", 4096, 11008, 32, 32, 32000)),
}


def lm_config(lm: LMSize) -> Any:
    """The transformers config of the frozen LM (FlanT5 / LLaMA layout)."""
    if lm.kind == "t5":
        from transformers import T5Config

        return T5Config(
            vocab_size=lm.vocab, d_model=lm.hidden, d_kv=lm.hidden // lm.heads, d_ff=lm.ff,
            num_layers=lm.layers, num_decoder_layers=lm.layers, num_heads=lm.heads,
            feed_forward_proj="gated-gelu", tie_word_embeddings=False,
            pad_token_id=0, eos_token_id=1, decoder_start_token_id=0,
        )
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=lm.vocab, hidden_size=lm.hidden, intermediate_size=lm.ff, num_hidden_layers=lm.layers,
        num_attention_heads=lm.heads, num_key_value_heads=lm.heads, max_position_embeddings=2048,
        bos_token_id=1, eos_token_id=2, pad_token_id=None, tie_word_embeddings=False,
    )


# ---- tokenizers, made offline ---------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Assets:
    qformer_tokenizer: Path  # folder with a WordPiece vocab.txt
    t5_tokenizer: Path
    llama_tokenizer: Path


def write_wordpiece_vocab(folder: Path, size: int = QFORMER_VOCAB - 1) -> Path:
    """A BERT-style vocab.txt: the special tokens at BERT's ids, the corpus words, filler tokens."""
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({w for line in CORPUS for w in line.split()})
    tokens = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"] + words
    tokens += [f"[filler{i}]" for i in range(size - len(tokens))]
    (folder / "vocab.txt").write_text("\n".join(tokens) + "\n")
    return folder


def make_assets(work: Path) -> Assets:
    """Tokenizer folders under ``work`` (reused when already there)."""
    from lavis.models.llm.tiny import train_sentencepiece

    work.mkdir(parents=True, exist_ok=True)
    qformer = work / "qformer_vocab"
    if not (qformer / "vocab.txt").exists():
        write_wordpiece_vocab(qformer)
    # Random sentences over the corpus words: enough text that every word becomes one piece,
    # about the token-per-word rate of the real tokenizers on English.
    words = sorted({w for line in CORPUS for w in line.split()})
    rng = random.Random(0)
    texts = [" ".join(rng.choice(words) for _ in range(12)) for _ in range(2000)]
    folders = {}
    for kind in ("t5", "llama"):
        folder = work / f"{kind}_tokenizer"
        if not (folder / "tokenizer_config.json").exists():
            train_sentencepiece(texts, folder, kind, vocab_size=512)
        folders[kind] = folder
    return Assets(qformer, folders["t5"], folders["llama"])


# ---- our model ------------------------------------------------------------------------------
def our_overrides(size: ModelSize, assets: Assets, llm_dtype: str, vision_precision: str) -> dict[str, Any]:
    v, q = size.vision, size.qformer
    return {
        "checkpoint": None,
        "vision": {
            "name": "eva_clip_g", "image_size": v.image_size, "patch_size": v.patch_size, "width": v.width,
            "depth": v.depth, "heads": v.heads, "mlp_ratio": v.mlp_ratio, "precision": vision_precision,
            "freeze": True, "pretrained": None,
        },
        "qformer": {
            "num_query_tokens": q.queries, "hidden_size": q.hidden, "num_layers": q.layers, "num_heads": q.heads,
            "intermediate_size": q.intermediate, "cross_attention_freq": q.cross_attention_freq,
            "vocab_size": QFORMER_VOCAB, "pretrained": None, "tokenizer": str(assets.qformer_tokenizer),
        },
        "llm": {
            "name_or_path": str(assets.t5_tokenizer if size.lm.kind == "t5" else assets.llama_tokenizer),
            "dtype": llm_dtype, "config_overrides": {},
        },
    }


def build_ours(size: ModelSize, assets: Assets, llm_dtype: str = "fp32", vision_precision: str = "fp32") -> Any:
    """Our stage-2 instruct model with random weights (nothing read but the tokenizers)."""
    import lavis  # noqa: F401  (fills the registries)
    from lavis.models import MODELS, model_config

    cfg = model_config(size.arch, "tiny", our_overrides(size, assets, llm_dtype, vision_precision))
    return MODELS.get(size.arch).from_config(cfg, load_weights=False, llm_config=lm_config(size.lm))


# ---- Hugging Face's InstructBLIP -----------------------------------------------------------------
def hf_config(size: ModelSize) -> Any:
    from transformers import InstructBlipConfig, InstructBlipQFormerConfig, InstructBlipVisionConfig

    v, q = size.vision, size.qformer
    vision = InstructBlipVisionConfig(
        hidden_size=v.width, intermediate_size=v.mlp, num_hidden_layers=v.depth, num_attention_heads=v.heads,
        image_size=v.image_size, patch_size=v.patch_size, layer_norm_eps=1e-6, qkv_bias=True,
    )
    qformer = InstructBlipQFormerConfig(
        vocab_size=QFORMER_VOCAB, hidden_size=q.hidden, num_hidden_layers=q.layers, num_attention_heads=q.heads,
        intermediate_size=q.intermediate, cross_attention_frequency=q.cross_attention_freq,
        encoder_hidden_size=v.width,
    )
    return InstructBlipConfig(
        vision_config=vision, qformer_config=qformer, text_config=lm_config(size.lm),
        num_query_tokens=q.queries, image_token_index=size.lm.vocab - 1,
    )


def build_hf(size: ModelSize, llm_dtype: torch.dtype = torch.float32) -> Any:
    """HF InstructBLIP from the same description, SDPA attention, with our frozen set frozen."""
    from transformers import InstructBlipForConditionalGeneration

    model = InstructBlipForConditionalGeneration._from_config(hf_config(size), attn_implementation="sdpa")
    model.language_model.to(llm_dtype)
    return freeze_like_ours(model)


def freeze_like_ours(model: Any) -> Any:
    """Freeze HF's vision tower and LLM as ours are, except ``post_layernorm``: it is our
    ``ln_vision``, which trains (as in LAVIS)."""
    for frozen in (model.vision_model, model.language_model):
        frozen.requires_grad_(False)
    model.vision_model.post_layernorm.requires_grad_(True)
    return model


def hf_train_mode(model: Any) -> Any:
    """``train()`` with the frozen parts in eval mode, as our model keeps them (no dropout there)."""
    model.train()
    model.vision_model.eval()
    model.language_model.eval()
    return model


def build_pair(size: ModelSize, work: Path, device: str = "cpu") -> tuple[Any, Any]:
    """(ours, HF's) at ``size``, seeded, on ``device``, in eval mode."""
    torch.manual_seed(0)
    ours = build_ours(size, make_assets(work / "assets")).to(device).eval()
    return ours, build_hf(size).to(device).eval()


def trainable_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)
