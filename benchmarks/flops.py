"""Model FLOPs of a stage-2 training step, analytically per component, and counted by torch.

Per sample, forward matmul FLOPs (2 per multiply-add) of each part, then what training adds:

- frozen vision encoder: forward only (x1);
- Q-Former and projection: forward, input and weight gradients (x3), the cross-attention key and
  value projections of the image features included (their input gradient reaches ``ln_vision``,
  which trains; LayerNorms are not matmuls and not counted);
- frozen LLM: forward and input gradients, which reach the prefix (x2);
- attention scores and weighted sums have no weights; their backward is two matmuls each (x3);
- T5's first decoder layer reads gradient-free answer embeddings: its self-attention needs no
  backward (x1), its cross-attention no query gradient (x2.5).

The counted figure uses ``torch.utils.flop_counter`` on a real step; with the math attention
backend on CPU (whose flash kernel the counter does not know) it checks the formulas in tests.
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable

import torch

from benchmarks.sizes import LMSize, ModelSize, QFormerSize, VisionSize

TRAIN_FACTOR = {
    "vision": 1, "qformer_linear": 3, "qformer_image_kv": 3, "qformer_attention": 3, "projection": 3,
    "llm_linear": 2, "llm_attention": 3, "llm_no_backward": 1, "llm_first_cross_attention": 2.5,
}


@dataclasses.dataclass(frozen=True)
class Tokens:
    """Sequence lengths of one sample."""

    qformer_text: int  # instruction tokens in the Q-Former (0: queries only, BLIP-2 T5)
    lm_prompt: int  # instruction tokens in the LLM, after the query prefix
    answer: int  # answer tokens (with EOS)


def model_tokens(model: object, prompts: list[str], answers: list[str]) -> Tokens:
    """The padded lengths our model's tokenizers give a batch (what its step computes on)."""
    bridge = model.bridge  # type: ignore[attr-defined]
    text = model.tokenize(prompts, model.cfg.max_txt_len)[0].shape[1] if model.QFORMER_TEXT else 0  # type: ignore[attr-defined]
    prompt = bridge.tokenize(prompts, bridge.max_input, "left")[0].shape[1]  # BOS or EOS counted
    answer = bridge.tokenize(answers, bridge.max_output, "right")[0].shape[1]  # EOS (T5) / BOS (LLaMA)
    return Tokens(int(text), int(prompt), int(answer))


def vision_flops(v: VisionSize) -> float:
    n, w = v.tokens, v.width
    patches = 2 * (n - 1) * 3 * v.patch_size**2 * w
    block = 2 * n * (4 * w * w + 2 * w * v.mlp) + 4 * n * n * w
    return patches + v.depth * block


def qformer_flops(q: QFormerSize, image_tokens: int, image_width: int, text: int) -> dict[str, float]:
    h, length = q.hidden, q.queries + text
    linear = kv = attention = 0.0
    for layer in range(q.layers):
        linear += 2 * length * 4 * h * h + 2 * length * 2 * h * q.intermediate  # self-attn, both FFNs
        attention += 4 * length * length * h
        if layer % q.cross_attention_freq == 0:
            linear += 2 * q.queries * 2 * h * h  # cross query and output projections
            kv += 2 * image_tokens * 2 * image_width * h
            attention += 4 * q.queries * image_tokens * h
    return {"qformer_linear": linear, "qformer_image_kv": kv, "qformer_attention": attention}


def llm_flops(lm: LMSize, prefix: int, tokens: Tokens) -> dict[str, float]:
    d, ff, heads = lm.hidden, lm.ff, lm.heads
    inner = (d // heads) * heads
    if lm.kind == "t5":
        enc, dec = prefix + tokens.lm_prompt, tokens.answer
        linear = lm.layers * (2 * enc * 4 * d * inner + 2 * enc * 3 * d * ff)  # encoder (gated FFN)
        linear += lm.layers * (2 * dec * 4 * d * inner + 2 * dec * 3 * d * ff)  # decoder self + FFN
        linear += lm.layers * (2 * dec * 2 * d * inner + 2 * enc * 2 * d * inner)  # cross q,o and k,v
        attention = lm.layers * (4 * enc * enc * inner + 4 * dec * dec * inner + 4 * dec * enc * inner)
        # The decoder's first layer reads the (frozen, gradient-free) answer embeddings: its
        # self-attention needs no backward at all, its cross-attention query no input gradient.
        no_backward = 2 * dec * 4 * d * inner + 4 * dec * dec * inner + 2 * dec * d * inner
        first_cross = 4 * dec * enc * inner
        return {
            "llm_linear": linear - 2 * dec * 5 * d * inner + 2 * dec * d * lm.vocab,
            "llm_attention": attention - 4 * dec * dec * inner - first_cross,
            "llm_no_backward": no_backward,
            "llm_first_cross_attention": first_cross,
        }
    length = prefix + tokens.lm_prompt + tokens.answer
    linear = lm.layers * (2 * length * 4 * d * d + 2 * length * 3 * d * ff) + 2 * length * d * lm.vocab
    return {"llm_linear": linear, "llm_attention": lm.layers * 4 * length * length * d}


def forward_flops(size: ModelSize, tokens: Tokens) -> dict[str, float]:
    """Forward FLOPs per sample, by component."""
    q = size.qformer
    return {
        "vision": vision_flops(size.vision),
        **qformer_flops(q, size.vision.tokens, size.vision.width, tokens.qformer_text),
        "projection": 2 * q.queries * q.hidden * size.lm.hidden,
        **llm_flops(size.lm, q.queries, tokens),
    }


def train_flops(size: ModelSize, tokens: Tokens, cached: bool = False) -> float:
    """Training-step FLOPs per sample; ``cached``: image features come from the feature cache."""
    parts = forward_flops(size, tokens)
    return sum(TRAIN_FACTOR[k] * v for k, v in parts.items() if not (cached and k == "vision"))


def counted_flops(fn: Callable[[], object]) -> int:
    """FLOPs torch executes in ``fn`` (matmuls, convolutions, attention). On CPU attention runs on
    the math backend for the count, since the counter has no formula for the CPU flash kernel."""
    from torch.utils.flop_counter import FlopCounterMode

    backend = contextlib.nullcontext()
    if not torch.cuda.is_available():
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = sdpa_kernel(SDPBackend.MATH)
    with backend, FlopCounterMode(display=False) as counter:
        fn()
    return int(counter.get_total_flops())


# Dense bf16 tensor-core peaks (TFLOP/s) for model FLOPs utilisation; override with --peak-tflops.
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100 SXM": 989.0, "H100 NVL": 835.0, "H100 PCIe": 756.0, "H100": 989.0,
                    "A100": 312.0, "L40S": 362.0, "A10": 125.0, "L4": 121.0}


def peak_tflops(device_name: str) -> float | None:
    """The table entry whose key appears in the device name (longest match first)."""
    for key in sorted(PEAK_BF16_TFLOPS, key=len, reverse=True):
        if key.lower() in device_name.lower():
            return PEAK_BF16_TFLOPS[key]
    return None
