"""Length grouping in a real stage-2 run: the runner's loader groups by text length through the
feature cache, and every tokenisation pads to the batch's own longest text, never to the
configured maximum."""

from __future__ import annotations

import pytest
import torch

from tests.perf.conftest import ANSWERS, QUESTIONS


def build_runner(run_yaml, name: str, **run):
    from lavis.cli import build_parser, load
    from lavis.runners import RUNNERS
    from lavis.tasks import TASKS

    cfg = load(build_parser("train", None).parse_args(["--cfg-path", str(run_yaml(name, **run))]))
    task = TASKS.get(cfg.run.task)(cfg.task)
    runner = RUNNERS.get("runner_epoch")(cfg, task, task.build_model(cfg), task.build_datasets(cfg))
    runner.build_train_loader()
    return runner


def epoch_texts(runner, epoch: int) -> list[list[str]]:
    runner.train_sampler.set_epoch(epoch)
    return [batch["text_input"] for batch in runner.train_loader]


def test_stage2_batches_are_grouped_by_default_through_the_feature_cache(run_yaml):
    from lavis.datasets.feature_cache import CachedFeatures

    grouped = build_runner(run_yaml, "grouped")  # instruction_tuning: on by default
    assert isinstance(grouped.train_loader.dataset.dataset, CachedFeatures)
    # 12 pairs, 4 of each of 3 lengths, batch 4: every batch holds one kind of pair
    for epoch in (0, 1):
        batches = epoch_texts(grouped, epoch)
        assert sorted(len(set(b)) for b in batches) == [1, 1, 1], batches
    plain = build_runner(run_yaml, "plain", group_by_length=False)
    mixed = epoch_texts(plain, 0)
    assert sorted(t for b in mixed for t in b) == sorted(t for b in epoch_texts(grouped, 0) for t in b)
    assert any(len(set(b)) > 1 for b in mixed)


def test_every_tokenisation_pads_to_the_batch_longest_text(tiny_model):
    """Q-Former text, LLM encoder input and LLM target: lengths of the longest item, not max_txt_len."""
    model = tiny_model
    seen: dict[str, tuple[int, ...]] = {}

    def record(name):
        def hook(module, args, kwargs, output):
            kwargs = {"input_ids": args[0], **kwargs} if args else kwargs
            for key in ("input_ids", "inputs_embeds", "labels"):
                if kwargs.get(key) is not None:
                    seen[f"{name}.{key}"] = tuple(kwargs[key].shape[:2])

        return hook

    handles = [model.Qformer.bert.register_forward_hook(record("qformer"), with_kwargs=True),
               model.llm.register_forward_hook(record("llm"), with_kwargs=True)]
    questions, answers = [QUESTIONS[0], QUESTIONS[1]], [ANSWERS[0], ANSWERS[1]]
    try:
        with torch.no_grad():
            model({"image": torch.randn(2, 3, 56, 56), "text_input": questions, "text_output": answers})
    finally:
        for handle in handles:
            handle.remove()
    longest = lambda ids: max(len(x) for x in ids)  # noqa: E731
    qformer_text = longest(model.tokenizer(questions).input_ids)
    prompt = longest(model.bridge.tokenizer(questions).input_ids)
    answer = longest(model.bridge.tokenizer(answers).input_ids)
    assert max(qformer_text, prompt, answer) < min(model.cfg.max_txt_len, model.cfg.max_output_txt_len)
    queries = model.query_tokens.shape[1]
    assert seen["qformer.input_ids"] == (2, qformer_text)
    assert seen["llm.inputs_embeds"] == (2, queries + prompt)
    assert seen["llm.labels"] == (2, answer)


def test_grouped_batches_backpropagate_their_mean_loss_times_their_answer_share(run_yaml):
    runner = build_runner(run_yaml, "weights", accum_grad_iters=100)  # no optimizer step: gradients stay
    runner.setup_training(total_steps=10)
    runner.model.eval()  # no dropout: the same batch gives the same gradient twice
    runner.train_sampler.set_epoch(0)
    batch = next(iter(runner.train_loader))
    order = runner.train_sampler.global_order(0)
    answers = [len(a) for a in runner.train_loader.dataset.dataset.table.column("text_output")]
    batch_chars = [sum(answers[i] for i in order[k : k + 4]) for k in range(0, len(order), 4)]
    expected = batch_chars[0] / (sum(batch_chars) / len(batch_chars))
    assert expected != 1.0

    def gradient(weighted: bool) -> torch.Tensor:
        runner.run.length_group_loss_weights = weighted
        runner.optimizer.zero_grad(set_to_none=True)
        runner.batches_done = 0
        runner.micro_step(dict(batch), batches_in_epoch=3)
        return runner.model.query_tokens.grad.clone()

    runner.batches_done = 1  # as inside micro_step, which counts the batch before weighing it
    assert runner.data.loss_weight(runner.epoch, runner.batches_done - 1) == pytest.approx(expected)
    torch.testing.assert_close(gradient(True), expected * gradient(False), rtol=1e-4, atol=1e-7)


def test_resuming_a_grouped_run_mid_epoch_gives_the_same_weights(tmp_path, run_yaml):
    from safetensors.torch import load_file

    from lavis.cli import main

    keys = {"save_every_n_iters": 2, "keep_last": 10, "valid_splits": []}
    assert main("train", argv=["--cfg-path", str(run_yaml("straight", **keys))]) == 0
    checkpoints = tmp_path / "straight" / "checkpoints"
    resumed = run_yaml("resumed", resume=str(checkpoints / "step_2"), **keys)  # mid-epoch: 3 steps per epoch
    assert main("train", argv=["--cfg-path", str(resumed)]) == 0
    final = max(checkpoints.glob("step_*"), key=lambda p: int(p.name.split("_")[1])).name
    assert final == "step_6"
    a = load_file(str(checkpoints / final / "model.safetensors"))
    b = load_file(str(tmp_path / "resumed" / "checkpoints" / final / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
