"""Question wordings of the demo beyond its template bank (``configs/demo/wordings.yaml``).

- Training: the template bank's wordings plus "generated-style" ones, written by a local
  paraphrase grammar (core questions asked plain, after a lead-in sentence or a prefix, clauses
  inside ask-whether and tell-me frames, short forms). CLOVER's generation-based instructions are
  GPT-3.5's own wordings; the demo has no network, so this grammar stands in for them.
- Validation and test: wordings held out from training, and from each other, so that a score on
  them measures understanding a question rather than recognising a memorised one.

A unit of questions (a yes/no pair, or an open tuple with one question per answer value) shares
one wording, so the wording never predicts the answer.
"""

from __future__ import annotations

import dataclasses
import itertools
import os
import random
import re
from collections.abc import Sequence
from typing import Any

from lavis.common.errors import ConfigError
from lavis.instructions.templates import TemplateBank
from lavis.instructions.yaml_files import load_typed_yaml

DEFAULT_FILE = "demo/wordings.yaml"
HELDOUT_SPLITS = ("val", "test")


@dataclasses.dataclass
class GrammarAttribute:
    closed_questions: list[str] = dataclasses.field(default_factory=list)  # with {value}
    closed_clauses: list[str] = dataclasses.field(default_factory=list)  # "the tissue is {value}"
    closed_short: list[str] = dataclasses.field(default_factory=list)
    open_questions: list[str] = dataclasses.field(default_factory=list)  # may name {v1} and {v2}
    open_clauses: list[str] = dataclasses.field(default_factory=list)  # "how dense the tissue is"
    open_short: list[str] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class Openings:
    """Openings composed of a phrase and a mark ("Right:", "For my notes,", "Moving on. Is ..."):
    each core question gets ``per_question`` of them, drawn at random (seeded by the question)."""

    phrases: list[str] = dataclasses.field(default_factory=list)
    marks: list[str] = dataclasses.field(default_factory=list)  # after "." or "!" the question starts a sentence
    per_question: int = 0

    def draw(self, question: str) -> list[str]:
        every = [f"{phrase}{mark}" for phrase in self.phrases for mark in self.marks]
        return random.Random(question).sample(every, min(self.per_question, len(every)))


@dataclasses.dataclass
class Grammar:
    lead_ins: list[str]  # a sentence before the question
    prefixes: list[str]  # a phrase before the question, which then starts lower-case
    ask_whether: list[str]  # frames around a closed clause: "Can you tell me whether {clause}?"
    tell_me: list[str]  # frames around an open clause: "Please tell me {clause}."
    detailed: list[str]
    attributes: dict[str, GrammarAttribute]
    openings: Openings = dataclasses.field(default_factory=Openings)


@dataclasses.dataclass
class HeldoutAttribute:
    closed: list[str]
    open: list[str]


@dataclasses.dataclass
class HeldoutSplit:
    detailed: list[str]
    attributes: dict[str, HeldoutAttribute]


@dataclasses.dataclass
class WordingFile:
    version: str
    generated: Grammar
    heldout: dict[str, HeldoutSplit]

    def validate(self) -> None:
        missing = [split for split in HELDOUT_SPLITS if split not in self.heldout]
        if missing:
            raise ConfigError(f"'heldout': missing the split(s) {missing}; expected {list(HELDOUT_SPLITS)}")


@dataclasses.dataclass
class Wordings:
    """Question frames of one split: per attribute, closed ones ({value}) and open ones ({v1}, {v2})."""

    detailed: list[str]
    closed: dict[str, list[str]]
    open: dict[str, list[str]]


def load_wording_file(path: str | os.PathLike | None = None) -> WordingFile:
    return load_typed_yaml(WordingFile, path, DEFAULT_FILE, "demo wordings")[0]


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:] if text[:1].islower() else text


def _lower_first(text: str) -> str:
    """"Is the tissue ..." -> "is the tissue ..."; "DAB positive?" and "{value} ..." keep their case."""
    return text[:1].lower() + text[1:] if text[1:2].islower() else text


def expand_grammar(grammar: Grammar) -> Wordings:
    """Every wording the paraphrase grammar writes, per attribute and question kind."""
    def around(questions: list[str], clauses: list[str], frames: list[str], short: list[str]) -> list[str]:
        out = list(questions)
        out += [f"{lead} {q}" for lead, q in itertools.product(grammar.lead_ins, questions)]
        out += [f"{prefix} {_lower_first(q)}" for prefix, q in itertools.product(grammar.prefixes, questions)]
        out += [f"{opening} {q if opening[-1] in '.!' else _lower_first(q)}"
                for q in questions for opening in grammar.openings.draw(q)]
        out += [frame.format(clause=clause) for frame, clause in itertools.product(frames, clauses)]
        return _unique(out + short)

    closed = {name: around(a.closed_questions, a.closed_clauses, grammar.ask_whether, a.closed_short)
              for name, a in grammar.attributes.items()}
    open_ = {name: around(a.open_questions, a.open_clauses, grammar.tell_me, a.open_short)
             for name, a in grammar.attributes.items()}
    detailed = around(grammar.detailed, [], [], [])
    return Wordings(detailed, closed, open_)


def template_wordings(bank: TemplateBank) -> Wordings:
    """The template bank's wordings as frames (its open questions name values literally)."""
    return Wordings(list(bank.detailed_prompts),
                    {n: list(s.closed.questions) for n, s in bank.attributes.items() if s.closed},
                    {n: list(s.open.questions) for n, s in bank.attributes.items() if s.open})


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(items))


def normalized(text: str) -> str:
    """What makes two wordings the same: case, spacing and end punctuation do not count."""
    return " ".join(re.sub(r"[^\w&'-]+", " ", text.lower()).split())


def render_all(frame: str, values: Sequence[str]) -> list[str]:
    """Every question ``frame`` writes with the attribute's ``values``."""
    if "{value}" in frame:
        return [_sentence(frame.replace("{value}", v)) for v in values]
    if "{v1}" in frame:
        return [_sentence(frame.replace("{v1}", a).replace("{v2}", b)) for a, b in itertools.permutations(values, 2)]
    return [frame]


def concrete(wordings: Wordings, values: dict[str, list[str]]) -> dict[str, str]:
    """normalized question -> the frame that wrote it, over every attribute and kind."""
    out = {normalized(q): q for q in wordings.detailed}
    for kind in (wordings.closed, wordings.open):
        for name, frames in kind.items():
            for frame in frames:
                out.update({normalized(q): frame for q in render_all(frame, values.get(name, []))})
    return out


def split_wordings(bank: TemplateBank, file: WordingFile | None = None) -> dict[str, Wordings]:
    """{"generated": training's grammar wordings, "val": ..., "test": ...}, checked disjoint.

    A generated wording that happens to equal a held-out one is left out of training; a template
    wording equal to a held-out one, or a wording both in validation and test, is an error."""
    file = file or load_wording_file()
    values = {name: list(spec.values) for name, spec in bank.attributes.items()}
    heldout = {split: Wordings(file.heldout[split].detailed,
                               {n: a.closed for n, a in file.heldout[split].attributes.items()},
                               {n: a.open for n, a in file.heldout[split].attributes.items()})
               for split in HELDOUT_SPLITS}
    seen = {split: concrete(w, values) for split, w in heldout.items()}
    template = concrete(template_wordings(bank), values)
    for split in HELDOUT_SPLITS:
        clash = sorted(set(seen[split]) & set(template))
        if clash:
            raise ConfigError(f"demo wordings: the {split} wording {seen[split][clash[0]]!r} is a template "
                              f"(training) wording ({template[clash[0]]!r}); held-out wordings must be new")
    both = sorted(set(seen["val"]) & set(seen["test"]))
    if both:
        raise ConfigError(f"demo wordings: {seen['test'][both[0]]!r} is both a val and a test wording")
    held = set(seen["val"]) | set(seen["test"])
    grammar = expand_grammar(file.generated)

    def keep(frames: list[str], name: str | None) -> list[str]:
        rendered = values.get(name, []) if name else []
        return [f for f in frames if not held & {normalized(q) for q in render_all(f, rendered)}]

    generated = Wordings(keep(grammar.detailed, None),
                         {n: keep(f, n) for n, f in grammar.closed.items()},
                         {n: keep(f, n) for n, f in grammar.open.items()})
    return {"generated": generated, **heldout}


def asked_value(question: str, values: Sequence[str]) -> str | None:
    """The value a closed template question asks about ("Is the tissue in this image dense?" -> dense)."""
    for value in values:
        if re.search(rf"(?<![\w&]){re.escape(value)}(?![\w&])", question, re.IGNORECASE):
            return value
    return None


def reword(unit: Sequence[dict[str, Any]], wordings: Wordings, values: dict[str, list[str]],
           rng: random.Random) -> list[dict[str, Any]] | None:
    """The unit's questions asked in one wording drawn from ``wordings`` (new dicts); None when the
    unit's attribute has no wordings there (it keeps its template wording)."""
    first = unit[0]
    attribute = first["attribute"]
    if attribute == "detailed":
        text = rng.choice(wordings.detailed)
    elif first["answer_type"] == "CLOSED":
        frames, asked = wordings.closed.get(attribute), asked_value(first["question"], values[attribute])
        if not frames or asked is None:
            return None
        text = _sentence(rng.choice(frames).replace("{value}", asked))
    else:
        frames = wordings.open.get(attribute)
        if not frames:
            return None
        text = rng.choice(render_all(rng.choice(frames), values[attribute]))
    return [{**q, "question": text} for q in unit]
