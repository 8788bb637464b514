"""A stage-2 epoch: the real ``RunnerEpoch`` with its defaults against a LAVIS-style loop around
transformers' ``InstructBlipForConditionalGeneration``, on the same data, sizes and weights.

    python -m benchmarks.stage2_epoch --size base --samples 32 --batch 8 --rounds 2

Data: CLOVER instructions (``generate_instructions.py`` JSONL) with the length spread of the
generated + template mix (benchmarks/instruction_mix.py), one 1280x720 JPEG video frame of real
tissue per record. Contenders, one epoch each, alternated (ABBA):

- ``ours``: ``RunnerEpoch`` as a stage-2 run gets it - frozen-encoder feature cache (built once
  at start-up, timed apart), length-grouped batches, fused AdamW, 2 loader workers; the train
  transform is the fixed resize (augmentation off, which is what lets the cache apply);
- ``ours_random_batches``: the same runner with random batches (``run.group_by_length: false``);
- ``hf_loop``: the loop users write around transformers' model, as LAVIS's runner does: a
  DataLoader (2 workers, shuffled) that opens and decodes every image every epoch through HF's
  ``BlipImageProcessor``, tokenises in the collate (padding to the batch's longest), then
  forward, backward and ``torch.optim.AdamW`` with LAVIS's parameter groups (torch's default
  implementation).

Each contender takes one untimed step first. ``length_grouping_speedup`` = random / grouped
epoch time; ``stage2_epoch_speedup_vs_hf`` = HF loop / ours.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from benchmarks.cache_epoch import epoch_runner, one_epoch
from benchmarks.data_files import write_frames
from benchmarks.instruction_mix import Pair, make_pairs, word_counts
from benchmarks.sizes import SIZES, build_ours, hf_train_mode, hf_with_weights_of, make_assets, our_overrides
from benchmarks.timing import alternate, command_line, emit, load_run_config
from benchmarks.train_step import WORK

FRAME = (1280, 720)


def write_instructions(root: Path, pairs: list[Pair]) -> Path:
    """``instructions.jsonl`` + ``quilt_1m/`` frames, as generate_instructions.py writes them."""
    frames = write_frames(root / "quilt_1m", [FRAME], len(pairs))
    lines = [json.dumps({"question": p.question, "answer": p.answer, "image": frame.name, "caption": "",
                         "caption_id": i, "source": p.source, "answer_type": p.answer_type})
             for i, (p, frame) in enumerate(zip(pairs, frames))]
    (root / "instructions.jsonl").write_text("\n".join(lines) + "\n")
    return root


# ---- ours ----------------------------------------------------------------------------------------
def our_config(size: str, root: Path, out: Path, name: str, batch: int, workers: int, grouped: bool) -> Any:

    processor = {"name": "pathology_image_eval", "image_size": SIZES[size].vision.image_size}
    cfg = {
        "model": {"arch": SIZES[size].arch, "model_type": "tiny",
                  **our_overrides(SIZES[size], make_assets(WORK / "assets"), "fp32", "fp32")},
        "datasets": {"clover_instructions": {"storage": str(root), "vis_processor": {"train": processor,
                                                                                    "eval": processor}}},
        "run": {"task": "instruction_tuning", "output_dir": str(out / name), "device": "cpu", "seed": 0,
                "batch_size_train": batch, "batch_size_eval": batch, "num_workers": workers,
                "progress_bar": False, "log_freq": 10_000, "init_lr": 1e-5, "group_by_length": grouped,
                "feature_cache_dir": str(out / "cache")},
    }
    return load_run_config(cfg, out / f"{name}.yaml")


def our_epoch(runner: Any, arrange: Any) -> None:
    """The body of ``RunnerEpoch.train`` for one epoch (no validation or checkpoint), with the
    sampler's length grouping ``arrange`` (None: random batches). One runner serves both ways,
    so only one model and optimizer are in memory."""
    runner.train_sampler.arrange = arrange
    one_epoch(runner)


def our_warm_step(runner: Any) -> None:
    runner.train_sampler.set_epoch(10_000)
    runner.micro_step(next(iter(runner.train_loader)), None)


# ---- the LAVIS-style loop around transformers' model ----------------------------------------------
class FrameInstructions(Dataset):
    """(pixel_values, question, answer): the image opened and decoded on every access."""

    def __init__(self, root: Path, image_size: int) -> None:
        from transformers import BlipImageProcessor

        from lavis.processors.image_processors import CLIP_MEAN, CLIP_STD

        self.root = root
        self.records = [json.loads(line) for line in (root / "instructions.jsonl").read_text().splitlines()]
        self.processor = BlipImageProcessor(size={"height": image_size, "width": image_size},
                                            image_mean=list(CLIP_MEAN), image_std=list(CLIP_STD), resample=3)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, str, str]:
        from PIL import Image

        record = self.records[index]
        with Image.open(self.root / "quilt_1m" / record["image"]) as image:
            pixels = self.processor(image.convert("RGB"), return_tensors="pt").pixel_values[0]
        return pixels, record["question"], record["answer"]


class HFCollate:
    """Tokenise a batch as InstructBLIP's processor does: Q-Former ids, [image tokens; prompt],
    answer labels; every part padded to the batch's longest."""

    def __init__(self, ours: Any, image_token_id: int) -> None:
        self.qformer, self.lm = ours.tokenizer, ours.bridge.tokenizer
        self.queries, self.image_token_id = ours.query_tokens.shape[1], image_token_id
        self.max_input, self.max_output = ours.cfg.max_txt_len, ours.cfg.max_output_txt_len

    def __call__(self, items: list[tuple[torch.Tensor, str, str]]) -> dict[str, torch.Tensor]:
        from benchmarks.inputs import IGNORE

        pixels, questions, answers = zip(*items)
        q = self.qformer(list(questions), padding="longest", truncation=True, max_length=self.max_input,
                         return_tensors="pt")
        prompt = self.lm(list(questions), padding="longest", truncation=True, max_length=self.max_input,
                         return_tensors="pt")
        target = self.lm(list(answers), padding="longest", truncation=True, max_length=self.max_output,
                         return_tensors="pt")
        placeholders = torch.full((len(items), self.queries), self.image_token_id, dtype=prompt.input_ids.dtype)
        return {
            "pixel_values": torch.stack(pixels),
            "qformer_input_ids": q.input_ids, "qformer_attention_mask": q.attention_mask,
            "input_ids": torch.cat([placeholders, prompt.input_ids], dim=1),
            "attention_mask": torch.cat([torch.ones_like(placeholders), prompt.attention_mask], dim=1),
            "labels": target.input_ids.masked_fill(target.attention_mask == 0, IGNORE),
            "decoder_attention_mask": target.attention_mask,
        }


def lavis_param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """LAVIS's split: no weight decay for 1-D parameters, biases and norms."""
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if param.requires_grad:
            plain = param.ndim < 2 or "bias" in name or "ln" in name or "bn" in name
            (no_decay if plain else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


class HFLoop:
    def __init__(self, hf: Any, ours: Any, root: Path, image_size: int, batch: int, workers: int) -> None:
        self.model = hf_train_mode(hf)
        self.optimizer = torch.optim.AdamW(lavis_param_groups(hf, 0.05), lr=1e-5)
        self.loader = DataLoader(FrameInstructions(root, image_size), batch_size=batch, shuffle=True,
                                 num_workers=workers, collate_fn=HFCollate(ours, hf.config.image_token_id),
                                 generator=torch.Generator().manual_seed(0))

    def step(self, batch: dict[str, torch.Tensor]) -> None:
        self.model(**batch).loss.backward()
        self.optimizer.step()
        self.optimizer.zero_grad(set_to_none=True)

    def epoch(self) -> None:
        for batch in self.loader:
            self.step(batch)

    def warm_step(self) -> None:
        self.step(next(iter(self.loader)))


# ---- the figures -----------------------------------------------------------------------------------
def padding_shares(runner: Any, arrange: Any, pairs: list[Pair], batch: int, epochs: int = 4) -> dict[str, float]:
    """Share of padded Q-Former text and LM answer positions over a few epochs of this runner's
    batches with ``arrange`` (token counts of the benchmark tokenizers)."""
    from lavis.runners.length_grouping import padded_fraction

    runner.train_sampler.arrange = arrange
    model = runner.model
    questions = np.asarray([len(model.tokenizer(p.question).input_ids) for p in pairs])
    answers = np.asarray([len(model.bridge.tokenizer(p.answer).input_ids) for p in pairs])
    orders = []
    for epoch in range(epochs):
        runner.train_sampler.set_epoch(epoch)
        orders.append([index for _, index in runner.train_sampler])
    return {"qformer_text": float(np.mean([padded_fraction(o, questions, batch) for o in orders])),
            "lm_answer": float(np.mean([padded_fraction(o, answers, batch) for o in orders]))}


# Per-GPU batches of the shipped stage-2 configs (configs/train/stage2_clover_*.yaml); base: this benchmark.
PROJECTION_BATCH = {"base": 8, "flant5xl": 16, "vicuna7b": 8}
TOKENS_PER_WORD = 1.3  # T5 / LLaMA sentencepiece on English prose (the benchmark tokenizers: ~1)


def epoch_flops(size: Any, tokens: np.ndarray, arranged: list[int], batch: int, cached: bool) -> float:
    """Training FLOPs of one epoch cut into batches of ``batch`` in ``arranged`` order; ``tokens``
    holds (question, answer) token counts per sample; every batch pads to its longest."""
    from benchmarks.flops import Tokens, train_flops

    total = 0.0
    for start in range(0, len(arranged), batch):
        rows = tokens[arranged[start : start + batch]]
        if size.lm.kind == "t5":
            shape = Tokens(rows[:, 0].max() + 1, rows[:, 0].max(), rows[:, 1].max())
        else:  # one packed sequence: prompt + answer, padded to the longest
            shape = Tokens(rows[:, 0].max() + 1, rows.sum(axis=1).max(), 0)
        total += len(rows) * train_flops(size, shape, cached=cached)
    return total


def flops_projection(samples: int = 4000, seed: int = 0) -> dict[str, Any]:
    """Computed, not measured: training FLOPs of one epoch over the mix, the LAVIS-style loop
    (images encoded every step, random batches) against ours (cached features, length-grouped
    batches), at each size's per-GPU batch; the ratio is the speedup at equal FLOP/s."""
    from lavis.runners.length_grouping import group_by_length

    pairs = make_pairs(samples, seed)
    words = np.asarray([[len(p.question.split()), len(p.answer.split())] for p in pairs])
    tokens = np.ceil(words * TOKENS_PER_WORD).astype(int) + 1  # + EOS / BOS
    chars = np.asarray([len(p.question) + len(p.answer) for p in pairs])
    out: dict[str, Any] = {"samples": samples, "tokens_per_word": TOKENS_PER_WORD, "batch": PROJECTION_BATCH}
    for name, batch in PROJECTION_BATCH.items():
        size = SIZES[name]
        order = np.random.default_rng(seed).permutation(samples).tolist()
        grouped = group_by_length(order, chars, batch, 50, np.random.default_rng(seed + 1))
        lavis_style = epoch_flops(size, tokens, order, batch, cached=False)
        ours = epoch_flops(size, tokens, grouped, batch, cached=True)
        out[name] = {"lavis_style_pflops": lavis_style / 1e15, "ours_pflops": ours / 1e15,
                     "speedup_at_equal_flops_per_s": lavis_style / ours,
                     "grouping_alone": epoch_flops(size, tokens, order, batch, cached=True) / ours}
    return out


def run(size: str = "base", samples: int = 32, batch: int = 8, workers: int = 2, rounds: int = 2,
        threads: int = 1) -> dict[str, Any]:
    torch.set_num_threads(threads)
    out = WORK / f"stage2_epoch_{size}_{samples}"
    pairs = make_pairs(samples, seed=0)
    root = write_instructions(out / "data", pairs)
    if (out / "cache").exists():  # time a fresh cache build every time
        import shutil

        shutil.rmtree(out / "cache")
    torch.manual_seed(0)
    model = build_ours(SIZES[size], make_assets(WORK / "assets"))
    hf = hf_with_weights_of(model, SIZES[size])
    runner, build_s = epoch_runner(our_config(size, root, out, "ours", batch, workers, True), model)
    grouping = runner.train_sampler.arrange
    if grouping is None:
        raise RuntimeError("the runner did not group batches by length")
    loop = HFLoop(hf, model, root, SIZES[size].vision.image_size, batch, workers)
    our_warm_step(runner)
    loop.warm_step()
    epochs = {"ours": lambda: our_epoch(runner, grouping), "ours_random_batches": lambda: our_epoch(runner, None),
              "hf_loop": loop.epoch}
    timings = alternate(epochs, items_per_call=samples, rounds=rounds, calls_per_round=1, warmup=0)
    epoch_s = {name: samples / t["median"] for name, t in timings.items()}
    return {
        "size": size, "samples": samples, "batch": batch, "num_workers": workers, "threads": threads,
        "rounds": rounds, "frame_px": list(FRAME), "words": word_counts(pairs),
        "sources": {s: sum(p.source == s for p in pairs) for s in ("generated", "template")},
        "cache_build_s": build_s, "epoch_s": epoch_s, "samples_per_s": timings,
        "padding": {"grouped": padding_shares(runner, grouping, pairs, batch),
                    "random": padding_shares(runner, None, pairs, batch)},
        "length_grouping_speedup": epoch_s["ours_random_batches"] / epoch_s["ours"],
        "speedup_vs_hf": epoch_s["hf_loop"] / epoch_s["ours"],
        "cpu_speedup_vs_hf": timings["ours"]["cpu_median"] / timings["hf_loop"]["cpu_median"],
    }


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, size="base", batch=8, rounds=2, threads=1)
    parser.add_argument("--samples", type=int, default=32)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    emit(run(args.size, args.samples, args.batch, args.workers, args.rounds, args.threads), args.out)


if __name__ == "__main__":
    main()
