"""The Q-Former: BERT parity, LAVIS parameter layout, attention masks, the ITG prefix cache."""

from __future__ import annotations

import re

import pytest
import torch

from lavis.common.errors import CheckpointError
from lavis.models.qformer import (
    QFormer,
    QFormerConfig,
    load_bert_weights,
    load_qformer_tokenizer,
)

TINY = dict(hidden_size=32, num_layers=4, num_heads=4, intermediate_size=64, num_query_tokens=4, pretrained=None)


def minilm_config(minilm_dir) -> QFormerConfig:
    return QFormerConfig(hidden_size=384, num_layers=6, num_heads=12, intermediate_size=1536, pretrained=str(minilm_dir))


@pytest.fixture(scope="module")
def minilm_qformer(minilm_dir):
    qformer = QFormer(minilm_config(minilm_dir), encoder_width=48, lm_head=True)
    left = load_bert_weights(qformer, str(minilm_dir))
    return qformer.eval(), left


def test_text_only_outputs_match_bert(minilm_qformer, minilm_dir):
    from transformers import BertModel

    qformer, _ = minilm_qformer
    tokenizer = load_qformer_tokenizer(str(minilm_dir))
    bert = BertModel.from_pretrained(str(minilm_dir)).eval()
    texts = ["lymphocytes infiltrate the stroma around tumor nests, h&e stain", "glands", "no necrosis is seen"]
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = qformer.bert(enc.input_ids, enc.attention_mask).last_hidden_state
        theirs = bert(input_ids=enc.input_ids, attention_mask=enc.attention_mask).last_hidden_state
    real = enc.attention_mask.bool()  # padded positions carry no meaning in either model
    torch.testing.assert_close(ours[real], theirs[real], atol=1e-5, rtol=0)


def test_bert_loading_fills_query_ffn_and_reports_new_parts(minilm_qformer):
    qformer, left = minilm_qformer
    layer = qformer.bert.encoder.layer[3]
    assert torch.equal(layer.intermediate_query.dense.weight, layer.intermediate.dense.weight)
    assert torch.equal(layer.output_query.LayerNorm.bias, layer.output.LayerNorm.bias)
    # Cross-attention (even layers) and the MLM transform are not in a sentence-transformers BERT.
    assert "bert.encoder.layer.0.crossattention.self.key.weight" in left
    assert "cls.predictions.transform.dense.weight" in left
    assert not any(name.startswith("bert.encoder.layer.1.crossattention") for name, _ in qformer.named_parameters())
    assert "bert.embeddings.word_embeddings.weight" not in left


def test_tokenizer_adds_dec_bos(minilm_dir):
    tokenizer = load_qformer_tokenizer(str(minilm_dir))
    assert len(tokenizer) == 30523 and tokenizer.bos_token == "[DEC]" and tokenizer.bos_token_id == 30522
    assert tokenizer("glands").input_ids[0] == tokenizer.cls_token_id


def test_bert_config_mismatch_is_a_clear_error(minilm_dir):
    qformer = QFormer(QFormerConfig(**TINY), encoder_width=8)
    with pytest.raises(CheckpointError, match="hidden_size=384 but model.qformer.hidden_size=32"):
        load_bert_weights(qformer, str(minilm_dir))


def test_parameter_names_follow_lavis():
    qformer = QFormer(QFormerConfig(**TINY), encoder_width=24, lm_head=True)
    names = set(qformer.state_dict())
    expected = {
        "bert.embeddings.word_embeddings.weight",
        "bert.embeddings.position_embeddings.weight",
        "bert.embeddings.LayerNorm.weight",
        "bert.encoder.layer.0.attention.self.query.weight",
        "bert.encoder.layer.0.attention.output.dense.weight",
        "bert.encoder.layer.0.attention.output.LayerNorm.bias",
        "bert.encoder.layer.0.crossattention.self.key.weight",
        "bert.encoder.layer.0.crossattention.output.LayerNorm.weight",
        "bert.encoder.layer.0.intermediate.dense.weight",
        "bert.encoder.layer.0.output.LayerNorm.weight",
        "bert.encoder.layer.0.intermediate_query.dense.weight",
        "bert.encoder.layer.0.output_query.dense.weight",
        "cls.predictions.transform.dense.weight",
        "cls.predictions.transform.LayerNorm.weight",
        "cls.predictions.decoder.weight",
        "cls.predictions.bias",
    }
    assert expected <= names
    assert not any("token_type" in n for n in names)
    assert not any(".crossattention." in n for n in names if n.startswith(("bert.encoder.layer.1.", "bert.encoder.layer.3.")))
    assert qformer.bert.encoder.layer[2].crossattention.self.key.weight.shape == (32, 24)  # kv width = vision width
    assert qformer.cls.predictions.decoder.weight is qformer.bert.embeddings.word_embeddings.weight


def test_queries_only_variant_has_no_text_parts():
    qformer = QFormer(QFormerConfig(**TINY), encoder_width=24, text=False)
    names = [n for n, _ in qformer.named_parameters()]
    assert not any("word_embeddings" in n or "position_embeddings" in n for n in names)
    assert not any(re.search(r"layer\.\d+\.(intermediate|output)\.", n) for n in names)  # text FFN
    assert any(re.search(r"layer\.\d+\.output_query\.", n) for n in names)
    with pytest.raises(RuntimeError, match="queries only"):
        qformer.bert(torch.ones(1, 3, dtype=torch.long), query_embeds=torch.zeros(1, 4, 32), image_embeds=torch.zeros(1, 5, 24))


@pytest.fixture(scope="module")
def tiny_qformer():
    torch.manual_seed(0)
    return QFormer(QFormerConfig(**TINY), encoder_width=24, lm_head=True).eval()


def _inputs(seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    queries = torch.randn(2, 4, 32, generator=generator)
    image = torch.randn(2, 5, 24, generator=generator)
    ids = torch.randint(1000, 2000, (2, 6), generator=generator)
    mask = torch.tensor([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
    return queries, image, ids, mask


def test_bidirectional_queries_read_text_but_causal_queries_do_not(tiny_qformer):
    queries, image, ids, mask = _inputs()
    changed = ids.clone()
    changed[:, 2] += 7
    with torch.no_grad():
        runs = {
            causal: [
                tiny_qformer.bert(x, mask, query_embeds=queries, image_embeds=image, causal=causal).last_hidden_state
                for x in (ids, changed)
            ]
            for causal in (False, True)
        }
    bi, uni = runs[False], runs[True]
    assert not torch.allclose(bi[0][:, :4], bi[1][:, :4], atol=1e-4)  # instruction-aware queries
    torch.testing.assert_close(uni[0][:, :4], uni[1][:, :4])  # ITG: queries see only queries
    torch.testing.assert_close(uni[0][:, 4:6], uni[1][:, 4:6])  # text before the change is unaffected
    assert not torch.allclose(uni[0][:, 6:], uni[1][:, 6:], atol=1e-4)


def test_padding_does_not_leak(tiny_qformer):
    queries, image, ids, mask = _inputs()
    changed = ids.clone()
    changed[1, 4:] = 5  # row 1's padded slots
    with torch.no_grad():
        a = tiny_qformer.bert(ids, mask, query_embeds=queries, image_embeds=image).last_hidden_state
        b = tiny_qformer.bert(changed, mask, query_embeds=queries, image_embeds=image).last_hidden_state
    torch.testing.assert_close(a[1, :8], b[1, :8])


def test_itg_prefix_cache_equals_joint_causal_pass(tiny_qformer):
    queries, image, ids, mask = _inputs()
    with torch.no_grad():
        prefix = tiny_qformer.bert(query_embeds=queries, image_embeds=image, use_cache=True)
        cached = tiny_qformer.bert(ids, mask, causal=True, past_key_values=prefix.past_key_values).last_hidden_state
        joint = tiny_qformer.bert(ids, mask, query_embeds=queries, image_embeds=image, causal=True).last_hidden_state
    real = mask.bool()
    torch.testing.assert_close(cached[real], joint[:, 4:][real], atol=1e-5, rtol=1e-5)


def test_lm_loss_ignores_padding(tiny_qformer):
    queries, image, ids, mask = _inputs()
    with torch.no_grad():
        prefix = tiny_qformer.bert(query_embeds=queries, image_embeds=image, use_cache=True).past_key_values
        loss = tiny_qformer.lm_loss(ids, mask, prefix)
        changed = ids.clone()
        changed[1, 4:] = 3
        assert torch.isfinite(loss)
        torch.testing.assert_close(loss, tiny_qformer.lm_loss(changed, mask, prefix))
