"""Full-size parameter counts on the meta device (no weights, no download) against figures derived
by hand from the published dimensions."""

from __future__ import annotations

import pytest
import torch

from lavis.models import MODELS, model_config

# Published dimensions (google/flan-t5-xl, lmsys/vicuna-7b-v1.1 and facebook/opt-2.7b config.json),
# written out here.
FLAN_T5_XL = dict(vocab=32128, d_model=2048, d_kv=64, heads=32, d_ff=5120, layers=24, buckets=32)
VICUNA_7B = dict(vocab=32000, hidden=4096, intermediate=11008, layers=32, heads=32)
OPT_2_7B = dict(vocab=50272, hidden=2560, ffn=10240, layers=32, heads=32, positions=2048, word_embed_proj_dim=2560)
EVA_G = dict(width=1408, depth=39, mlp=6144, patch=14, tokens=257)
VISION, HIDDEN, QUERIES = 1408, 768, 32


def linear(n_in: int, n_out: int, bias: bool = True) -> int:
    return n_in * n_out + (n_out if bias else 0)


def qformer(text: bool = True, vocab: int = 30523, positions: int = 512, layers: int = 12, ff: int = 3072) -> int:
    h, norm = HIDDEN, 2 * HIDDEN
    self_attention = 4 * linear(h, h) + norm
    cross_attention = 2 * linear(h, h) + 2 * linear(VISION, h) + norm
    feed_forward = linear(h, ff) + linear(ff, h) + norm
    per_layer = self_attention + feed_forward * (2 if text else 1)  # query FFN (+ text FFN)
    embeddings = norm + ((vocab + positions) * h if text else 0)
    return embeddings + layers * per_layer + (layers // 2) * cross_attention  # cross-attn in layers 0,2,..


def eva_vit_g() -> int:
    w = EVA_G["width"]
    block = 2 * 2 * w + 3 * w * w + 2 * w + linear(w, w) + linear(w, EVA_G["mlp"]) + linear(EVA_G["mlp"], w)
    stem = linear(3 * EVA_G["patch"] ** 2, w) + w + EVA_G["tokens"] * w  # patch embed, CLS, positions
    return stem + EVA_G["depth"] * block  # qkv has q and v biases only (no k bias)


def flan_t5_xl() -> int:
    c = FLAN_T5_XL
    inner = c["heads"] * c["d_kv"]
    attention = 4 * c["d_model"] * inner
    ffn = 3 * c["d_model"] * c["d_ff"]  # gated GELU: wi_0, wi_1, wo
    encoder = c["layers"] * (attention + ffn + 2 * c["d_model"]) + c["buckets"] * c["heads"] + c["d_model"]
    decoder = c["layers"] * (2 * attention + ffn + 3 * c["d_model"]) + c["buckets"] * c["heads"] + c["d_model"]
    return 2 * c["vocab"] * c["d_model"] + encoder + decoder  # shared embeddings + separate LM head


def vicuna_7b() -> int:
    c = VICUNA_7B
    layer = 4 * c["hidden"] ** 2 + 3 * c["hidden"] * c["intermediate"] + 2 * c["hidden"]
    return 2 * c["vocab"] * c["hidden"] + c["layers"] * layer + c["hidden"]


def opt_2_7b() -> int:
    c = OPT_2_7B
    h = c["hidden"]
    layer = 4 * linear(h, h) + linear(h, c["ffn"]) + linear(c["ffn"], h) + 2 * 2 * h  # attention, MLP, 2 LayerNorms
    positions = (c["positions"] + 2) * h  # OPT's learned positions are offset by 2
    # LM head tied to the token embeddings; project_in/out exist only when word_embed_proj_dim != hidden
    return c["vocab"] * c["word_embed_proj_dim"] + positions + c["layers"] * layer + 2 * h  # + final LayerNorm


def llm_configs():
    from transformers import LlamaConfig, OPTConfig, T5Config

    t5 = FLAN_T5_XL
    ll = VICUNA_7B
    return {
        "t5": T5Config(
            vocab_size=t5["vocab"], d_model=t5["d_model"], d_kv=t5["d_kv"], d_ff=t5["d_ff"], num_layers=t5["layers"],
            num_heads=t5["heads"], relative_attention_num_buckets=t5["buckets"], feed_forward_proj="gated-gelu",
            tie_word_embeddings=False,
        ),
        "llama": LlamaConfig(
            vocab_size=ll["vocab"], hidden_size=ll["hidden"], intermediate_size=ll["intermediate"],
            num_hidden_layers=ll["layers"], num_attention_heads=ll["heads"], num_key_value_heads=ll["heads"],
            tie_word_embeddings=False,
        ),
        "opt": OPTConfig(
            vocab_size=OPT_2_7B["vocab"], hidden_size=OPT_2_7B["hidden"], ffn_dim=OPT_2_7B["ffn"],
            num_hidden_layers=OPT_2_7B["layers"], num_attention_heads=OPT_2_7B["heads"],
            max_position_embeddings=OPT_2_7B["positions"], word_embed_proj_dim=OPT_2_7B["word_embed_proj_dim"],
            do_layer_norm_before=True, tie_word_embeddings=True,
        ),
    }


STAGE1_HEADS = linear(HIDDEN, HIDDEN) + 2 * HIDDEN + 30523 + 2 * linear(HIDDEN, 256) + linear(HIDDEN, 2) + 1
LN_VISION = 2 * VISION  # trainable, as in LAVIS (train_ln_vision)
FROZEN_VISION = eva_vit_g()
CASES = {
    ("blip2", "pretrain"): (None, qformer() + QUERIES * HIDDEN + STAGE1_HEADS + LN_VISION, FROZEN_VISION),
    ("blip2_t5", "pretrain_flant5xl"): (
        "t5", qformer(text=False) + QUERIES * HIDDEN + linear(HIDDEN, 2048) + LN_VISION, FROZEN_VISION + flan_t5_xl()),
    ("blip2_t5_instruct", "flant5xl"): (
        "t5", qformer() + QUERIES * HIDDEN + linear(HIDDEN, 2048) + LN_VISION, FROZEN_VISION + flan_t5_xl()),
    ("blip2_vicuna_instruct", "vicuna7b"): (
        "llama", qformer() + QUERIES * HIDDEN + linear(HIDDEN, 4096) + LN_VISION, FROZEN_VISION + vicuna_7b()),
    ("blip2_llm", "pretrain_opt2.7b"): (
        "opt", qformer(text=False) + QUERIES * HIDDEN + linear(HIDDEN, 2560) + LN_VISION, FROZEN_VISION + opt_2_7b()),
}


@pytest.mark.parametrize(("arch", "model_type"), list(CASES))
def test_full_size_counts_match_the_analytic_figures(arch, model_type):
    llm, trainable, frozen = CASES[(arch, model_type)]
    cfg = model_config(arch, model_type)
    build = {} if llm is None else {"llm_config": llm_configs()[llm]}
    with torch.device("meta"):
        model = MODELS.get(arch).from_config(cfg, load_weights=False, **build)
    assert model.num_parameters(trainable=True) == trainable
    assert model.num_parameters(trainable=False) == frozen


def test_known_totals():
    """Cross-check the hand formulas against the published sizes."""
    assert 187_000_000 <= qformer() + QUERIES * HIDDEN + linear(HIDDEN, 2048) <= 190_000_000  # InstructBLIP: 187M
    assert round(flan_t5_xl() / 1e9, 2) == 2.85
    assert round(vicuna_7b() / 1e9, 2) == 6.74
    assert opt_2_7b() == 2_651_596_800  # OPT-2.7b as transformers counts it (head tied to the embeddings)
    assert round(eva_vit_g() / 1e6) == 986  # EVA ViT-g without its 40th block
