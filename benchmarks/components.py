"""Where a training step's time goes, ours vs transformers' InstructBLIP, part by part on the same
inputs: the frozen vision tower (forward) and the Q-Former (forward + backward). The rest of the
step (T5, loss, AdamW) runs the same transformers/torch code on both sides.

    python -m benchmarks.components --size base --batch 4
"""

from __future__ import annotations

from typing import Any

import torch

from benchmarks.inputs import make_batch
from benchmarks.sizes import SIZES, build_pair, hf_train_mode
from benchmarks.timing import alternate, command_line, emit
from benchmarks.train_step import WORK


def run(size: str = "base", batch: int = 4, rounds: int = 3, calls: int = 1, threads: int = 1) -> dict[str, Any]:
    torch.set_num_threads(threads)
    ours, hf = build_pair(SIZES[size], WORK)
    ours, hf = ours.train(), hf_train_mode(hf)
    data = make_batch(SIZES[size], batch, 24, 16)
    queries = SIZES[size].qformer.queries
    with torch.no_grad():
        embeds = ours.encode_image_frozen(data.images)
    ids, mask = ours.tokenize(data.prompts, ours.cfg.max_txt_len)
    hf_mask = torch.cat([torch.ones(batch, queries, dtype=mask.dtype), mask], dim=1)

    def vision_ours() -> None:
        ours.encode_image_frozen(data.images)

    def vision_hf() -> None:
        hf.vision_model(pixel_values=data.images)

    def qformer_ours() -> None:
        ours.query_output(embeds, ids, mask).last_hidden_state[:, :queries].sum().backward()

    def qformer_hf() -> None:
        out = hf.qformer(input_ids=ids, attention_mask=hf_mask, query_embeds=hf.query_tokens.expand(batch, -1, -1),
                         encoder_hidden_states=embeds)
        out.last_hidden_state[:, :queries].sum().backward()

    with torch.no_grad():
        vision = alternate({"ours": vision_ours, "hf": vision_hf}, items_per_call=batch, rounds=rounds,
                           calls_per_round=calls)
    qformer = alternate({"ours": qformer_ours, "hf": qformer_hf}, items_per_call=batch, rounds=rounds,
                        calls_per_round=calls)

    def ms(result: dict[str, Any]) -> dict[str, float]:
        return {name: 1000 * batch / r["cpu_median"] for name, r in result.items()}

    return {"size": size, "batch": batch, "threads": threads, "unit": "CPU ms per call (median)",
            "vision_forward": ms(vision), "qformer_forward_backward": ms(qformer)}


def main(argv: list[str] | None = None) -> None:
    args = command_line(__doc__, size="base", batch=4, rounds=3, calls=1, threads=1).parse_args(argv)
    emit(run(args.size, args.batch, args.rounds, args.calls, args.threads), args.out)


if __name__ == "__main__":
    main()
