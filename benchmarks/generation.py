"""Generation throughput (answers/s) of our model vs transformers' InstructBLIP at equal settings:
same size and random-weight layout, batch, prompt, beam search, and exactly the same number of new
tokens (``min_new_tokens = max_new_tokens``, so random weights cannot make one side stop early).

    python -m benchmarks.generation --size base --batch 2 --beams 5 --new-tokens 24
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.inputs import hf_inputs, make_batch, token_lengths
from benchmarks.sizes import SIZES, build_pair
from benchmarks.timing import alternate, command_line, emit, ratio
from benchmarks.train_step import WORK


def run(
    size: str, batch: int = 2, prompt_words: int = 24, beams: int = 5, new_tokens: int = 24, rounds: int = 4,
    calls: int = 1, threads: int = 1, warmup: int = 1,
) -> dict[str, Any]:
    torch.set_num_threads(threads)
    ours, hf = build_pair(SIZES[size], WORK)
    data = make_batch(SIZES[size], batch, prompt_words, 1)
    samples = {"image": data.images, "text_input": data.prompts}
    hf_batch = hf_inputs(ours, data, hf.config.image_token_id, with_labels=False)
    settings = dict(num_beams=beams, max_new_tokens=new_tokens, min_new_tokens=new_tokens, length_penalty=-1.0)

    def ours_generate() -> list[str]:  # the public API: strings out, decoding included
        return ours.generate(samples, **settings)

    @torch.no_grad()
    def hf_generate() -> torch.Tensor:
        return hf.generate(**hf_batch, **settings, do_sample=False)

    with torch.no_grad():  # both sides must produce the same number of tokens
        prompts = ours.prompts(samples)
        ours_ids = ours.bridge.generate_ids(ours.prefix(samples, prompts), prompts, _options(settings))
        lengths = {"ours": int(ours_ids.shape[1]), "hf": int(hf_generate().shape[1])}
    if lengths["ours"] != lengths["hf"]:
        raise RuntimeError(f"unequal generated lengths {lengths}: the comparison would not be fair")
    with torch.no_grad():
        timings = alternate({"ours": ours_generate, "hf": hf_generate}, items_per_call=batch, rounds=rounds,
                            calls_per_round=calls, warmup=warmup)
    return {
        "size": size, "batch": batch, "threads": threads, "tokens": token_lengths(hf_batch), **settings,
        "output_lengths": lengths, "answers_per_s": timings, "ratio_vs_hf": ratio(timings, "ours", "hf"),
    }


def _options(settings: dict[str, Any]):
    from lavis.models.llm.bridge import GenerationOptions

    return GenerationOptions(**settings)


def main(argv: list[str] | None = None) -> None:
    parser = command_line(__doc__, size="tiny", batch=2, rounds=4, calls=1, threads=1)
    parser.add_argument("--beams", type=int, default=5)
    parser.add_argument("--new-tokens", type=int, default=24)
    args = parser.parse_args(argv)
    emit(run(args.size, args.batch, beams=args.beams, new_tokens=args.new_tokens, rounds=args.rounds,
             calls=args.calls, threads=args.threads), args.out)


if __name__ == "__main__":
    main()
