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

import numpy as np
import torch
import torch.nn.functional as F  # noqa: N812

DROPPED = -1.0e9  # the score transformers gives a beam that must not be picked


class Search:
    """One request's decoding: ``width`` rows in the batch, ``advance`` once per step until ``done``."""

    width: int = 1
    done: bool = False
    reads_logits: bool = True  # False: ``advance`` takes ``best`` only, and its caller need not slice the tensors

    def advance(self, logits: torch.Tensor | None, log_probs: torch.Tensor | None,
                best: Sequence[int]) -> tuple[list[int], list[int]]:
        """From its rows' (width, vocab) float logits, their log-softmax and each row's most likely
        token (both computed once for the whole batch, EOS already banned where :meth:`bans_eos`):
        (parent row of each next row, token fed to it). The tensors are None for a search that
        does not ``reads_logits``."""
        raise NotImplementedError

    def bans_eos(self) -> bool:
        """Whether EOS is still banned (``min_new_tokens`` not reached): the caller sets its logit
        and log-probability to -inf for all such rows at once, as ``generate``'s processor does
        first (no other processor here touches EOS while it is banned)."""
        return False

    def settled(self) -> list[list[int]]:
        """Per answer, the tokens that will not change any more (EOS excluded)."""
        raise NotImplementedError

    def results(self) -> list[list[int]]:
        """Per answer, best first, the generated tokens (EOS included when the answer ended with it)."""
        raise NotImplementedError


def _process(processors: Sequence, initial: Sequence[int], rows: Sequence[Sequence[int]],
             scores: torch.Tensor) -> torch.Tensor:
    """``scores`` through the logits processors, which see ``generate``'s ``input_ids``: the
    initial ids, then each row's tokens."""
    if not processors:
        return scores
    ids = torch.tensor([[*initial, *row] for row in rows], dtype=torch.long, device=scores.device)
    for processor in processors:
        scores = processor(ids, scores)
    return scores


class TokenSearch(Search):
    """Greedy (``processors`` without warpers, ``sample=False``) or sampling of ``n`` answers.
    ``processors`` leave out the EOS ban before ``min_new`` tokens, which the caller applies to the
    whole batch at once (:meth:`bans_eos`)."""

    def __init__(self, n: int, processors, eos: int, pad: int, min_new: int, max_new: int, initial: Sequence[int],
                 sample: bool, generator: torch.Generator | None = None) -> None:
        self.width = n
        self.processors, self.eos, self.pad, self.min_new, self.max_new = processors, eos, pad, min_new, max_new
        self.initial, self.sample, self.generator = list(initial), sample, generator
        self.reads_logits = sample or bool(processors)  # plain greedy takes each row's most likely token
        self.tokens: list[list[int]] = [[] for _ in range(n)]  # every token fed, padding after the end too
        self.lengths: list[int | None] = [None] * n  # generated length of a finished answer

    def bans_eos(self) -> bool:
        return len(self.tokens[0]) < self.min_new

    def advance(self, logits: torch.Tensor | None, log_probs: torch.Tensor | None,
                best: Sequence[int]) -> tuple[list[int], list[int]]:
        if self.sample:
            scores = _process(self.processors, self.initial, self.tokens, logits)
            chosen = torch.multinomial(F.softmax(scores, dim=-1), 1, generator=self.generator).squeeze(1).tolist()
        elif self.processors:
            chosen = _process(self.processors, self.initial, self.tokens, logits).argmax(dim=-1).tolist()
        else:
            chosen = list(best)
        tokens = []
        for row, token in enumerate(chosen):
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
    divided by length ** ``length_penalty``, as in ``generate``).

    The bookkeeping of the 2 x ``beams`` candidates is in float32 numpy, the precision ``generate``
    ranks them in (small arrays: numpy's per-call cost is a fraction of torch's)."""

    def __init__(self, beams: int, n: int, processors, eos: int, min_new: int, max_new: int, length_penalty: float,
                 initial: Sequence[int]) -> None:
        self.width, self.n = beams, n
        self.processors, self.eos, self.length_penalty = processors, eos, length_penalty
        self.min_new, self.max_new = min_new, max_new
        self.initial = list(initial)
        self.running: list[list[int]] = [[] for _ in range(beams)]
        self.running_scores = np.full(beams, DROPPED, dtype=np.float32)
        self.running_scores[0] = 0.0  # all rows start alike: only the first one's continuations count
        self.finished: list[list[int]] = [[] for _ in range(beams)]
        self.finished_scores = np.full(beams, DROPPED, dtype=np.float32)
        self.is_finished = np.zeros(beams, dtype=bool)
        self.can_improve = True

    def bans_eos(self) -> bool:
        return len(self.running[0]) < self.min_new

    def advance(self, logits: torch.Tensor, log_probs: torch.Tensor, best: Sequence[int]) -> tuple[list[int], list[int]]:
        k, vocab = logits.shape
        log_probs = _process(self.processors, self.initial, self.running, log_probs)
        total = log_probs + torch.from_numpy(self.running_scores).to(logits.device)[:, None]
        top_scores, top_index = torch.topk(total.view(1, -1), 2 * k)
        top_scores, top_index = top_scores[0].cpu().numpy(), top_index[0].cpu().numpy()  # only 2k values leave
        parents, tokens = (top_index // vocab).tolist(), (top_index % vocab).tolist()
        before = self.running
        length = len(before[0]) + 1
        ends = np.array([t == self.eos or length >= self.max_new for t in tokens])

        # the k best candidates that go on
        going_on = top_scores + ends.astype(np.float32) * np.float32(DROPPED)
        keep = _top(going_on, k)
        self.running = [before[parents[i]] + [tokens[i]] for i in keep]
        self.running_scores = going_on[keep]

        # finished hypotheses: only among the first k candidates, scored with the length penalty
        just_ended = ends & (np.arange(2 * k) < k)
        scored = top_scores / (length ** self.length_penalty)
        if not self.can_improve:
            scored = scored + np.float32(DROPPED)
        scored = scored + (~just_ended).astype(np.float32) * np.float32(DROPPED)
        merged_scores = np.concatenate([self.finished_scores, scored])
        best = _top(merged_scores, k)
        old = len(self.finished)
        self.finished = [self.finished[i] if i < old else before[parents[i - old]] + [tokens[i - old]] for i in best]
        self.finished_scores = merged_scores[best]
        self.is_finished = np.concatenate([self.is_finished, just_ended])[best]

        # can a running beam still beat the worst kept hypothesis? (generate's heuristic)
        best_running = self.running_scores[0] / (length ** self.length_penalty)
        worst = np.where(self.is_finished, self.finished_scores.min(), np.float32(DROPPED))
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


def _top(values: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` largest values, largest first (``torch.topk``'s order)."""
    return np.argsort(-values, kind="stable")[:k].tolist()


def _common_prefix(rows: Sequence[Sequence[int]]) -> list[int]:
    if not rows:
        return []
    shortest = min(len(r) for r in rows)
    for i in range(shortest):
        if any(r[i] != rows[0][i] for r in rows):
            return list(rows[0][:i])
    return list(rows[0][:shortest])

