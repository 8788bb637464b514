"""P(yes) from likelihoods: the verdict word is found and swapped, probabilities are batched
correctly, and they follow what a model was trained to say."""

from __future__ import annotations

import pytest
import torch

from lavis.models.llm.verdict import is_yes_no_question, verdict, verdict_pair


@pytest.mark.parametrize(
    "answer, pair",
    [
        ("yes", ("yes", "no")),
        ("No.", ("Yes.", "No.")),
        ("Yes, the margins are free of tumor.", ("Yes, the margins are free of tumor.", "No, the margins are free of tumor.")),
        ("The tissue is loose: no.", ("The tissue is loose: yes.", "The tissue is loose: no.")),
        ("It is stained with H&E: YES", ("It is stained with H&E: YES", "It is stained with H&E: NO")),
        # the first word decides when it is the verdict, even if a later "no" follows
        ("Yes, there is no necrosis.", ("Yes, there is no necrosis.", "No, there is no necrosis.")),
        ("Lymphocytes infiltrate the stroma", ("yes", "no")),
        ("nobody knows", ("yes", "no")),  # whole words only
    ],
)
def test_verdict_pair(answer, pair):
    assert verdict_pair(answer) == pair


def test_verdict_word():
    assert verdict("The tissue is loose: no.") == "no"
    assert verdict("Yes.") == "yes"
    assert verdict("glands") is None


@pytest.mark.parametrize(
    "question, closed",
    [
        ("Is there necrosis?", True),
        ("Does this section show DAB positivity", True),
        ("The slide is H&E stained. Are the nuclei pleomorphic?", True),
        ("What type of cells are seen?", False),
        ("Describe the image in detail.", False),
        ("", False),
    ],
)
def test_is_yes_no_question(question, closed):
    assert is_yes_no_question(question) is closed


@pytest.mark.parametrize("arch", ["blip2_t5_instruct", "blip2_vicuna_instruct"])
def test_probabilities_are_the_softmax_of_the_swapped_answers(arch, build_tiny, make_batch):
    model = build_tiny(arch).eval()
    batch = make_batch(3)
    answers = ["The tissue is dense: no.", "yes", "Lymphocytes are seen."]
    probs = model.yes_no_probabilities(batch, answers)
    assert probs.shape == (3,) and ((probs > 0) & (probs < 1)).all()
    prompts = model.prompts(batch)
    for i, answer in enumerate(answers):
        single = {k: v[i : i + 1] for k, v in batch.items()}
        yes, no = verdict_pair(answer)
        scores = model.bridge.score(model.prefix(single, prompts[i : i + 1]), prompts[i : i + 1], [yes, no])[0]
        expected = 1 / (1 + torch.exp(scores[1] - scores[0]))  # exp of each would underflow
        torch.testing.assert_close(probs[i], expected, atol=1e-5, rtol=1e-4)
    # default answers are the model's own greedy ones
    greedy = model.generate(batch, num_beams=1, max_new_tokens=model.cfg.max_output_txt_len, min_new_tokens=1)
    torch.testing.assert_close(model.yes_no_probabilities(batch), model.yes_no_probabilities(batch, greedy))


def test_probabilities_follow_what_the_model_learned(build_tiny):
    """Two images, one question: trained to say "yes" for one and "no" for the other, the model's
    P(yes) must separate them (an untrained model does not)."""
    torch.manual_seed(0)
    model = build_tiny("blip2_t5_instruct")
    images = torch.stack([torch.full((3, 56, 56), 1.5), torch.full((3, 56, 56), -1.5)])
    batch = {
        "image": images,
        "text_input": ["is there necrosis in this image"] * 2,
        "text_output": ["yes", "no"],
    }
    model.eval()
    before = model.yes_no_probabilities(batch, ["no"] * 2)
    assert abs(before[0] - before[1]) < 0.2
    model.train()
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=3e-3)
    for _ in range(30):
        optimizer.zero_grad()
        model(batch)["loss"].backward()
        optimizer.step()
    model.eval()
    after = model.yes_no_probabilities(batch, ["no"] * 2)
    assert after[0] > 0.9 and after[1] < 0.1, after


def test_t5_reusing_the_encoder_output_of_generation_gives_the_same_probabilities(build_tiny, make_batch):
    """The serving loop hands over each row's encoder output from its start-up (padded to whatever
    its start-up batch needed) instead of having the prompts read again."""
    from lavis.models.llm.incremental import stack_encoded

    model = build_tiny("blip2_t5_instruct").eval()
    batch = make_batch(3)
    answers = ["The tissue is dense: no.", "yes", "Lymphocytes are seen."]
    with torch.no_grad():
        prefix = model.prefix(batch, model.qformer_prompts(batch))
        embeds, mask = model.bridge._encoder_inputs(prefix, model.prompts(batch))
        hidden = model.bridge.model.get_encoder()(inputs_embeds=embeds, attention_mask=mask).last_hidden_state
        extra = torch.zeros_like(hidden[:1, :3]), torch.zeros_like(mask[:1, :3])  # more padding on one row
        rows = [(hidden[i : i + 1], mask[i : i + 1]) for i in range(3)]
        rows[1] = (torch.cat([rows[1][0], extra[0]], 1), torch.cat([rows[1][1], extra[1]], 1))
        reused = model.yes_no_probabilities(batch, answers, prefix=prefix, encoded=stack_encoded(rows))
        read_again = model.yes_no_probabilities(batch, answers, prefix=prefix)
    torch.testing.assert_close(reused, read_again, atol=1e-5, rtol=1e-4)
