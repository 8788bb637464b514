"""Stage 2 at tiny size for each arch: losses, training, frozen parts, generation, ranking."""

from __future__ import annotations

import pytest
import torch

from lavis.common.errors import ConfigError

ARCHS = ("blip2_t5", "blip2_t5_instruct", "blip2_vicuna_instruct", "blip2_llm")
PROJ = {"blip2_t5": "t5_proj", "blip2_t5_instruct": "t5_proj", "blip2_vicuna_instruct": "llm_proj", "blip2_llm": "llm_proj"}
LLM = {"blip2_t5": "t5_model", "blip2_t5_instruct": "t5_model", "blip2_vicuna_instruct": "llm_model", "blip2_llm": "llm_model"}


@pytest.fixture(params=ARCHS)
def arch(request) -> str:
    return request.param


@pytest.fixture
def model(arch, build_tiny):
    return build_tiny(arch)


def _frozen_snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters() if not p.requires_grad}


def test_trainable_set_and_layout(arch, model):
    roots = {name.split(".")[0] for name, _ in model.trainable_named_parameters()}
    assert roots == {"Qformer", "query_tokens", "ln_vision", PROJ[arch]}  # ln_vision trains, as in LAVIS
    names = [n for n, _ in model.named_parameters()]
    assert not any(n.startswith("Qformer.cls.") for n in names)
    assert any(n.startswith(f"{LLM[arch]}.") for n in names)
    has_text = any("Qformer.bert.embeddings.word_embeddings" in n for n in names)
    assert has_text == (arch not in ("blip2_t5", "blip2_llm"))  # plain BLIP-2 drops the Q-Former's text-only parts
    assert getattr(model, PROJ[arch]).out_features == model.llm.get_input_embeddings().weight.shape[1]
    model.train()
    assert not model.llm.training and not model.visual_encoder.training and model.Qformer.training


def test_loss_falls_and_frozen_parts_do_not_move(model, make_batch):
    batch = make_batch(3)
    frozen = _frozen_snapshot(model)
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-3)
    losses = []
    for _ in range(20):
        optimizer.zero_grad()
        loss = model(batch)["loss"]
        loss.backward()
        assert all(p.grad is None for p in model.parameters() if not p.requires_grad)
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-3:]) / 3 < 0.9 * sum(losses[:3]) / 3, losses
    for name, param in model.named_parameters():
        if name in frozen:
            assert torch.equal(param, frozen[name]), name


def test_image_embeds_path_gives_the_same_loss(model, make_batch):
    model.eval()
    batch = make_batch(2)
    cached = {k: v for k, v in batch.items() if k != "image"}
    cached["image_embeds"] = model.encode_image_frozen(batch["image"])
    torch.testing.assert_close(model(batch)["loss"], model(cached)["loss"])
    assert model.generate(batch, num_beams=2, max_new_tokens=4) == model.generate(cached, num_beams=2, max_new_tokens=4)


def test_generate_is_batched_deterministic_and_bounded(arch, model, make_batch):
    model.eval()
    batch = make_batch(3)
    first = model.generate(batch, max_new_tokens=6, min_new_tokens=2)
    assert isinstance(first, list) and len(first) == 3 and all(isinstance(t, str) for t in first)
    assert model.generate(batch, max_new_tokens=6, min_new_tokens=2) == first
    assert model.predict_answers(batch, max_new_tokens=6, min_new_tokens=2) == first
    prompts = model.prompts(batch)
    from lavis.models.llm import GenerationOptions

    ids = model.bridge.generate_ids(model.prefix(batch, prompts), prompts, GenerationOptions(max_new_tokens=6))
    start = 1 if arch.startswith("blip2_t5") else 0  # T5 output starts with the decoder start token
    assert ids.shape[1] <= 6 + start
    two = model.generate(batch, num_beams=2, num_return_sequences=2, max_new_tokens=4)
    assert len(two) == 6
    torch.manual_seed(0)
    sampled = model.generate(batch, num_beams=1, use_nucleus_sampling=True, top_p=0.9, max_new_tokens=4)
    assert len(sampled) == 3


def test_batching_does_not_change_answers(model, make_batch):
    """Padding (left for decoder-only generation, right elsewhere) must not leak into answers."""
    model.eval()
    batch = make_batch(3)
    batch["text_input"] = ["no", "describe the image in detail please, with every finding", "what type of cells"]
    together = model.generate(batch, num_beams=1, max_new_tokens=5, min_new_tokens=1)
    prompts = model.prompts(batch)
    scores = model.bridge.score(model.prefix(batch, prompts), prompts, ["yes", "no", "lymphocytes"])
    for i in range(3):
        single = {k: v[i : i + 1] for k, v in batch.items()}
        assert model.generate(single, num_beams=1, max_new_tokens=5, min_new_tokens=1) == together[i : i + 1]
        one = model.bridge.score(model.prefix(single, prompts[i : i + 1]), prompts[i : i + 1], ["yes", "no", "lymphocytes"])
        torch.testing.assert_close(one[0], scores[i], atol=1e-4, rtol=1e-4)


def test_rank_answers_picks_the_most_likely_candidate(model, make_batch):
    model.eval()
    batch = make_batch(3)
    picks = model.rank_answers(batch)
    assert len(picks) == 3 and set(picks) <= {"yes", "no"}
    prompts = model.prompts(batch)
    scores = model.bridge.score(model.prefix(batch, prompts), prompts, ["yes", "no"])
    assert picks == [("yes", "no")[i] for i in scores.argmax(dim=1).tolist()]
    assert (scores < 0).all()  # summed log-probabilities
    assert model.rank_answers(batch, candidates=("stroma", "glands", "yes"))[0] in ("stroma", "glands", "yes")


def test_decoder_only_loss_covers_answer_tokens_only(build_tiny):
    model = build_tiny("blip2_vicuna_instruct")
    bridge = model.bridge
    prefix = torch.zeros(2, 8, model.llm.config.hidden_size)
    prompt = bridge._prompt(["is there necrosis", "describe"])
    answer = bridge._answer(["yes", "the tissue shows glands"])
    _, mask, labels = bridge._sequence(prefix, prompt, answer, "right")
    tokenizer = bridge.tokenizer
    for row, text in enumerate(["yes", "the tissue shows glands"]):
        expected = tokenizer(text, add_special_tokens=False).input_ids + [tokenizer.eos_token_id]
        assert labels[row][labels[row] != -100].tolist() == expected
        length = int(mask[row].sum())
        assert mask[row, :length].all() and not mask[row, length:].any()  # packed, padding on the right
    assert prompt[0][:, 0].eq(tokenizer.bos_token_id).all()


def test_llm_in_bf16_qformer_in_fp32(build_tiny, make_batch):
    model = build_tiny("blip2_vicuna_instruct", llm={"dtype": "bf16"})
    assert {p.dtype for p in model.llm.parameters()} == {torch.bfloat16}
    assert {p.dtype for p in model.Qformer.parameters()} == {torch.float32}
    loss = model(make_batch(2))["loss"]
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    loss.backward()
    assert model.llm_proj.weight.grad.dtype == torch.float32


def test_prompt_template(build_tiny, make_batch):
    model = build_tiny("blip2_t5_instruct", prompt="Question: {} Short answer:")
    batch = make_batch(2)
    assert model.prompts(batch) == [f"Question: {q} Short answer:" for q in batch["text_input"]]
    assert model.prompts({**batch, "prompt": "describe"}) == ["describe", "describe"]
    with pytest.raises(ConfigError, match="prompt"):
        build_tiny("blip2_t5_instruct", prompt="{} and {}")


def test_decoder_only_bos_override(build_tiny):
    model = build_tiny("blip2_vicuna_instruct", llm={"bos_token": "</s>"})  # InstructBLIP Vicuna's quirk
    ids, _ = model.bridge._prompt(["is there necrosis"])
    assert ids[0, 0].item() == model.bridge.tokenizer.eos_token_id
    unknown = build_tiny("blip2_vicuna_instruct", llm={"bos_token": "<no-such-token>"})
    with pytest.raises(ConfigError, match="bos_token"):
        _ = unknown.bridge  # the tokenizer (and so the check) loads on first use
