"""Per-GPU memory of a training step or of beam-search evaluation, from exact parameter counts.

Static part (exact): the weights in their precisions (image encoder in ``vision.precision``, the
LLM in ``llm.dtype``, everything else fp32), plus, for training, an fp32 gradient and two fp32
AdamW moments per trainable parameter. Per-sample part (a model, calibrated): activations kept
for the backward pass at the longest text the config allows (``max_txt_len`` instruction
tokens, ``max_output_txt_len`` answer tokens), so the largest batch it reports is safe for the
longest samples; for generation, the beams' key/value cache.

Calibration (benchmarks/memory_gpu.json, H200, bf16 autocast, random weights): per token, layer
and hidden unit a frozen decoder-only LLM keeps about 31 bytes (Vicuna-7B) and FlanT5-XL about 78
(its feed-forward output layer stays fp32); the frozen EVA ViT-g about 70 bytes per image token
and width unit. ``benchmarks.memory_gpu`` re-measures and prints estimate against measurement.
Works on models built on the meta device (no memory, no weights read).
"""

from __future__ import annotations

import dataclasses
import math

from torch import nn

GIB = 2**30
BYTES = {"fp32": 4, "bf16": 2, "fp16": 2}
ADAMW_BYTES = 4 + 8  # fp32 gradient + two fp32 moments per trainable parameter

# Activation bytes kept per (token x layer x hidden unit); see the module doc for where they come from.
DECODER_ONLY_BYTES = 32.0
ENCODER_DECODER_BYTES = 80.0
QFORMER_BYTES = 40.0  # trainable BERT-style layers under autocast, dropout masks included
VISION_BYTES = 72.0  # frozen encoder under no_grad: the transient peak of one block plus its output
LOGIT_BYTES = 14.0  # bf16 logits, their fp32 copy, log-softmax and its gradient
CUDA_CONTEXT_GIB = 1.0  # CUDA context and kernels, outside the allocator
FRAGMENTATION = 1.05  # allocator reserve over what is allocated (measured 2-4%)
GENERATION_WORKSPACE_GIB = 0.4  # measured fixed cost of a generate call at full size


@dataclasses.dataclass
class ParamCounts:
    vision: int
    ln_vision: int
    llm: int
    trainable: int
    total: int

    @property
    def other(self) -> int:
        """Everything kept in fp32: Q-Former, queries, projection, ln_vision, heads."""
        return self.total - self.vision - self.llm


def _count(module: nn.Module | None) -> int:
    return sum(p.numel() for p in module.parameters()) if module is not None else 0


def count_parameters(model: nn.Module) -> ParamCounts:
    """Parameters by part (works on the meta device)."""
    return ParamCounts(
        vision=_count(getattr(model, "visual_encoder", None)),
        ln_vision=_count(getattr(model, "ln_vision", None)),
        llm=_count(getattr(model, "llm", None)),
        trainable=sum(p.numel() for p in model.parameters() if p.requires_grad),
        total=_count(model),
    )


def weight_bytes(counts: ParamCounts, vision_precision: str, llm_dtype: str) -> int:
    return counts.vision * BYTES[vision_precision] + counts.llm * BYTES[llm_dtype] + counts.other * 4


def training_state_bytes(counts: ParamCounts) -> int:
    return counts.trainable * ADAMW_BYTES


@dataclasses.dataclass
class Shapes:
    """The dimensions activation memory depends on."""

    vision_tokens: int = 0
    vision_width: int = 0
    qformer_layers: int = 0
    qformer_hidden: int = 0
    queries: int = 0
    instruction: int = 0  # max instruction tokens
    answer: int = 0  # max answer tokens
    llm_kind: str | None = None  # "seq2seq" | "causal" | None (stage 1)
    llm_hidden: int = 0
    llm_layers: int = 0  # decoder-only: all layers; encoder-decoder: encoder layers
    llm_decoder_layers: int = 0
    llm_kv_width: int = 0  # key/value width per layer (heads x head dim)
    vocab: int = 0


def shapes_of(model: nn.Module) -> Shapes:
    """Read the dimensions off a built model (meta device is fine) and its config."""
    cfg = getattr(model, "cfg", None)
    shapes = Shapes()
    encoder = getattr(model, "visual_encoder", None)
    if encoder is not None:
        shapes.vision_tokens, shapes.vision_width = int(encoder.num_tokens), int(encoder.num_features)
    qformer = getattr(cfg, "qformer", None)
    if qformer is not None:
        shapes.qformer_layers, shapes.qformer_hidden = qformer.num_layers, qformer.hidden_size
        shapes.queries = qformer.num_query_tokens
    shapes.instruction = int(getattr(cfg, "max_txt_len", 32) or 32)
    shapes.answer = int(getattr(cfg, "max_output_txt_len", 0) or 0)
    llm = getattr(model, "llm", None)
    if llm is not None:
        config = llm.config
        if getattr(config, "is_encoder_decoder", False):
            shapes.llm_kind = "seq2seq"
            shapes.llm_hidden = config.d_model
            shapes.llm_layers = config.num_layers
            shapes.llm_decoder_layers = config.num_decoder_layers or config.num_layers
            shapes.llm_kv_width = config.num_heads * config.d_kv
        else:
            shapes.llm_kind = "causal"
            shapes.llm_hidden = config.hidden_size
            shapes.llm_layers = config.num_hidden_layers
            heads = config.num_attention_heads
            head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
            shapes.llm_kv_width = (getattr(config, "num_key_value_heads", None) or heads) * head_dim
        shapes.vocab = config.vocab_size
    return shapes


def vision_bytes(shapes: Shapes, cached_features: bool) -> float:
    return 0.0 if cached_features else VISION_BYTES * shapes.vision_tokens * shapes.vision_width


def train_bytes_per_sample(shapes: Shapes, cached_features: bool = False) -> float:
    """Activation bytes one training sample adds at the longest allowed text."""
    total = vision_bytes(shapes, cached_features)
    qformer_tokens = shapes.queries + shapes.instruction
    if shapes.llm_kind is None:
        # stage 1: image-text contrastive, matching (a positive and two negatives) and generation passes
        return total + QFORMER_BYTES * shapes.qformer_layers * shapes.qformer_hidden * 5 * qformer_tokens
    total += QFORMER_BYTES * shapes.qformer_layers * shapes.qformer_hidden * qformer_tokens
    if shapes.llm_kind == "seq2seq":
        encoder_tokens, decoder_tokens = shapes.queries + shapes.instruction, shapes.answer
        total += ENCODER_DECODER_BYTES * shapes.llm_hidden * (
            shapes.llm_layers * encoder_tokens + shapes.llm_decoder_layers * decoder_tokens)
        return total + LOGIT_BYTES * decoder_tokens * shapes.vocab
    tokens = shapes.queries + shapes.instruction + shapes.answer
    total += DECODER_ONLY_BYTES * shapes.llm_hidden * shapes.llm_layers * tokens
    return total + LOGIT_BYTES * tokens * shapes.vocab


def generation_bytes_per_sample(shapes: Shapes, num_beams: int, max_new_tokens: int, llm_dtype: str) -> float:
    """The beams' key/value cache (and one step's logits) for one sample."""
    if shapes.llm_kind is None:
        return vision_bytes(shapes, False)
    width = BYTES[llm_dtype]
    prompt = shapes.queries + shapes.instruction
    if shapes.llm_kind == "seq2seq":
        cache = shapes.llm_decoder_layers * 2 * shapes.llm_kv_width * width * (max_new_tokens + prompt)
    else:
        cache = shapes.llm_layers * 2 * shapes.llm_kv_width * width * (prompt + max_new_tokens)
    return vision_bytes(shapes, False) + num_beams * (cache + 4 * shapes.vocab)


@dataclasses.dataclass
class MemoryEstimate:
    """Bytes per GPU: ``static + batch * per_sample``, then allocator and CUDA-context overhead."""

    static: float
    per_sample: float
    mode: str  # "train" or "generate"
    parts: dict[str, float] = dataclasses.field(default_factory=dict)

    def allocated(self, batch: int) -> float:
        return self.static + batch * self.per_sample

    def needed(self, batch: int) -> float:
        """What a card must have: allocated bytes, allocator reserve and the CUDA context."""
        return self.allocated(batch) * FRAGMENTATION + CUDA_CONTEXT_GIB * GIB

    def largest_batch(self, capacity: float) -> int:
        """The largest per-GPU batch whose ``needed`` fits in ``capacity`` bytes (0: none)."""
        room = capacity - CUDA_CONTEXT_GIB * GIB
        if self.per_sample <= 0:
            return 0 if self.static * FRAGMENTATION > room else 1 << 20
        return max(0, math.floor((room / FRAGMENTATION - self.static) / self.per_sample))


def estimate(model: nn.Module, *, train: bool, vision_precision: str, llm_dtype: str,
             cached_features: bool = False, num_beams: int = 5, max_new_tokens: int = 40) -> MemoryEstimate:
    """The memory of ``model`` (built on any device, meta included) per GPU."""
    counts = count_parameters(model)
    shapes = shapes_of(model)
    weights = weight_bytes(counts, vision_precision, llm_dtype)
    if train:
        state = training_state_bytes(counts)
        return MemoryEstimate(weights + state, train_bytes_per_sample(shapes, cached_features), "train",
                              {"weights": weights, "grads_and_adamw": state})
    per_sample = generation_bytes_per_sample(shapes, num_beams, max_new_tokens, llm_dtype)
    return MemoryEstimate(weights + GENERATION_WORKSPACE_GIB * GIB, per_sample, "generate", {"weights": weights})
