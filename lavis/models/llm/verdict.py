"""Yes/no verdicts inside free-text answers, for confidence from likelihoods.

A closed question's answer may be a bare "yes", a sentence that starts with its verdict ("No, the
margins are clear.") or one that states an observation first ("The tissue is loose: no."). The
verdict is the first word when that is yes/no, else the last whole word yes/no. Swapping only
that word gives the two answers whose likelihoods, compared, are the model's P(yes): the rest of
the sentence is the model's own, so the comparison asks about the verdict and nothing else.
"""

from __future__ import annotations

import re

_WORD = re.compile(r"\b(yes|no)\b", re.IGNORECASE)
# Auxiliaries that open a yes/no question in English ("Is there ...", "Does the ...", "Can ...").
_QUESTION_WORDS = frozenset("what which how where when who whom whose why".split())
_SHORT_FORM_WORDS = 4  # "Dense?", "Any DAB staining?", "H&E or not?"; longer questions need an auxiliary
_AUX = frozenset(
    "is are was were am do does did can could should would will shall may might must has have had".split()
)


def verdict_span(answer: str) -> tuple[int, int] | None:
    """(start, end) of the verdict word in ``answer``, or None when it has none."""
    matches = list(_WORD.finditer(answer))
    if not matches:
        return None
    first = matches[0]
    if not answer[: first.start()].strip(" \t\n\"'([{*-"):  # nothing but punctuation before it
        return first.span()
    return matches[-1].span()


def verdict_pair(answer: str) -> tuple[str, str]:
    """(the answer saying yes, the answer saying no); bare ("yes", "no") without a verdict."""
    span = verdict_span(answer)
    if span is None:
        return "yes", "no"
    start, end = span
    word = answer[start:end]

    def cased(replacement: str) -> str:
        if word.isupper() and len(word) > 1:
            return replacement.upper()
        return replacement.capitalize() if word[0].isupper() else replacement

    return answer[:start] + cased("yes") + answer[end:], answer[:start] + cased("no") + answer[end:]


def verdict(answer: str) -> str | None:
    """"yes", "no" or None: the answer's verdict word, lower-cased."""
    span = verdict_span(answer)
    return None if span is None else answer[span[0] : span[1]].lower()


def is_yes_no_question(question: str) -> bool:
    """Whether ``question`` reads as a closed (yes/no) question: its last sentence opens with an
    auxiliary verb ("The tissue is stained with H&E. Is it dense?", "Is this an H&E slide?"), or
    is a short form asked with a question mark and no question word ("Dense?", "Any DAB staining?")."""
    # sentences, and clauses after a colon ("Quick question: is the tissue dense?")
    sentences = [part for part in re.split(r"(?<=[.!?:])\s+", question.strip()) if part.strip()]
    if not sentences:
        return False
    last = sentences[-1]
    words = re.findall(r"[A-Za-z0-9&'-]+", last)
    if not words:
        return False
    if words[0].lower() in _AUX:
        return True
    short = len(words) <= _SHORT_FORM_WORDS and last.rstrip().endswith("?")
    return short and not any(word.lower() in _QUESTION_WORDS for word in words)
