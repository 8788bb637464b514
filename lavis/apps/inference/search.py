"""How one request picks its next tokens from the logits of its rows, one decoding step at a time.

- :class:`TokenSearch`: greedy (``n`` = 1) or nucleus sampling (``n`` rows sampled independently);
- :class:`BeamSearch`: beam search with ``num_beams`` rows, returning the ``n`` best hypotheses.

Both follow ``transformers``' ``generate`` rule for rule (logits processors and their order,
min/max new tokens, EOS, length penalty, the beam stopping heuristic of ``early_stopping=False``),
so that a request decoded step by step in a shared batch gets the tokens ``generate`` gives it
alone (the tests compare them token for token). Rows of a request that finished early keep being
fed padding until the whole request is done, as ``generate`` does; that keeps a seeded request's
random draws, and so its samples, the same as ``generate``'s.

``settled()`` says per answer which tokens can no longer change: every token for greedy and
sampling; for beam search the prefix that every hypothesis still in the running shares (the final
answer is one of them or an extension of one), which is what a stream may send before the end.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F

DROPPED = -1.0e9  # the score transformers gives a beam that must not be picked


class Search:
    """One request's decoding: ``width`` rows in the batch, ``advance`` once per step until ``done``."""

    width: int = 1
    done: bool = False

    def advance(self, logits: torch.Tensor) -> tuple[list[int], list[int]]:
        """From (width, vocab) float logits: (parent row of each next row, token fed to it)."""
        raise NotImplementedError

    def settled(self) -> list[list[int]]:
        """Per answer, the tokens that will not change any more (EOS excluded)."""
        raise NotImplementedError

    def results(self) -> list[list[int]]:
        """Per answer, best first, the generated tokens (EOS included when the answer ended with it)."""
        raise NotImplementedError


def _ids(initial: Sequence[int], rows: Sequence[Sequence[int]], device: torch.device) -> torch.Tensor:
    """``generate``'s ``input_ids`` for the logits processors: the initial ids, then each row's tokens."""
    return torch.tensor([[*initial, *row] for row in rows], dtype=torch.long, device=device)


class TokenSearch(Search):
    """Greedy (``processors`` without warpers, ``sample=False``) or sampling of ``n`` answers."""

    def __init__(self, n: int, processors, eos: int, pad: int, max_new: int, initial: Sequence[int],
                 sample: bool, generator: torch.Generator | None = None) -> None:
        self.width = n
        self.processors, self.eos, self.pad, self.max_new = processors, eos, pad, max_new
        self.initial, self.sample, self.generator = list(initial), sample, generator
        self.tokens: list[list[int]] = [[] for _ in range(n)]  # every token fed, padding after the end too
        self.lengths: list[int | None] = [None] * n  # generated length of a finished answer

    def advance(self, logits: torch.Tensor) -> tuple[list[int], list[int]]:
        scores = self.processors(_ids(self.initial, self.tokens, logits.device), logits)
        if self.sample:
            chosen = torch.multinomial(F.softmax(scores, dim=-1), 1, generator=self.generator).squeeze(1)
        else:
            chosen = scores.argmax(dim=-1)
        tokens = []
        for row, token in enumerate(chosen.tolist()):
            if self.lengths[row] is not None:
                token = self.pad  # a finished row is fed padding, as generate does
            self.tokens[row].append(token)
            if self.lengths[row] is None and (token == self.eos or len(self.tokens[row]) >= self.max_new):
                self.lengths[row] = len(self.tokens[row])
            tokens.append(token)
        self.done = all(length is not None for length in self.lengths)
        return list(range(self.width)), tokens

    def settled(self) -> list[list[int]]:
        out = []
        for row, length in zip(self.tokens, self.lengths):
            kept = row if length is None else row[:length]
            out.append(kept[:-1] if kept and kept[-1] == self.eos else kept)
        return out

    def results(self) -> list[list[int]]:
        return [row[:length] for row, length in zip(self.tokens, self.lengths)]


class BeamSearch(Search):
    """``beams`` rows; the ``n`` best finished hypotheses when done (scores: summed log-probabilities
    divided by length ** ``length_penalty``, as in ``generate``)."""

    def __init__(self, beams: int, n: int, processors, eos: int, max_new: int, length_penalty: float,
                 initial: Sequence[int]) -> None:
        self.width, self.n = beams, n
        self.processors, self.eos, self.max_new, self.length_penalty = processors, eos, max_new, length_penalty
        self.initial = list(initial)
        self.running: list[list[int]] = [[] for _ in range(beams)]
        self.running_scores = torch.full((beams,), DROPPED)
        self.running_scores[0] = 0.0  # all rows start alike: only the first one's continuations count
        self.finished: list[list[int]] = [[] for _ in range(beams)]
        self.finished_scores = torch.full((beams,), DROPPED)
        self.is_finished = torch.zeros(beams, dtype=torch.bool)
        self.can_improve = True

    def advance(self, logits: torch.Tensor) -> tuple[list[int], list[int]]:
        k, vocab = logits.shape
        log_probs = self.processors(_ids(self.initial, self.running, logits.device), F.log_softmax(logits, dim=-1))
        total = (log_probs + self.running_scores.to(logits.device)[:, None]).view(1, -1)
        top_scores, top_index = (t[0].cpu() for t in torch.topk(total, 2 * k))  # only 2k values leave the device
        parents, tokens = (top_index // vocab).tolist(), (top_index % vocab).tolist()
        candidates = [self.running[p] + [t] for p, t in zip(parents, tokens)]
        length = len(self.running[0]) + 1
        ends = torch.tensor([t == self.eos or length >= self.max_new for t in tokens])

        # the k best candidates that go on
        going_on = top_scores + ends.float() * DROPPED
        keep = torch.topk(going_on, k).indices.tolist()
        self.running = [candidates[i] for i in keep]
        self.running_scores = going_on[keep]

        # finished hypotheses: only among the first k candidates, scored with the length penalty
        just_ended = ends & (torch.arange(2 * k) < k)
        scored = top_scores / (length ** self.length_penalty)
        if not self.can_improve:
            scored = scored + DROPPED
        scored = scored + (~just_ended).float() * DROPPED
        merged_scores = torch.cat([self.finished_scores, scored])
        best = torch.topk(merged_scores, k).indices.tolist()
        merged = self.finished + candidates
        self.finished = [merged[i] for i in best]
        self.finished_scores = merged_scores[best]
        self.is_finished = torch.cat([self.is_finished, just_ended])[best]

        # can a running beam still beat the worst kept hypothesis? (generate's heuristic)
        best_running = self.running_scores[0] / (length ** self.length_penalty)
        worst = torch.where(self.is_finished, self.finished_scores.min(), torch.tensor(DROPPED))
        self.can_improve = self.can_improve and bool((best_running > worst).any())
        self.done = not self.can_improve or bool(ends.all())
        return [parents[i] for i in keep], [tokens[i] for i in keep]

    def settled(self) -> list[list[int]]:
        pool = self.running + [h for h, real in zip(self.finished, self.is_finished.tolist()) if real]
        prefix = _common_prefix(pool)
        if prefix and prefix[-1] == self.eos:
            prefix = prefix[:-1]
        return [prefix] * self.n

    def results(self) -> list[list[int]]:
        return [list(h) for h in self.finished[: self.n]]


def _common_prefix(rows: Sequence[Sequence[int]]) -> list[int]:
    if not rows:
        return []
    shortest = min(len(r) for r in rows)
    for i in range(shortest):
        if any(r[i] != rows[0][i] for r in rows):
            return list(rows[0][:i])
    return list(rows[0][:shortest])

