"""COCO caption metrics (BLEU-1..4, METEOR, ROUGE-L, CIDEr, optional SPICE) through pycocoevalcap.

Captions go through pycocoevalcap's PTBTokenizer (Java) first, as the COCO evaluation does.
Scores are fractions, as pycocoevalcap reports them. The command is
``python -m lavis.metrics.captioning --gt GT.json --pred PRED.jsonl [--spice]`` (``__main__.py``).

GT: a COCO caption annotation file (``{"annotations": [{image_id, caption}, ...]}``) or a list /
JSON lines of ``{image_id, caption}``; PRED: a list / JSON lines of ``{image_id, caption}``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path

from lavis.common.errors import DataError, JavaNotFoundError, WeightsNotFoundError
from lavis.common.jsonio import read_json
from lavis.metrics.records_io import (
    id_key,
    read_records,
    read_texts_by_id,
    require_id,
    require_object,
    require_str,
)

SPICE_CORENLP = "stanford-corenlp-3.6.0"
SPICE_CORENLP_URL = "http://nlp.stanford.edu/software/stanford-corenlp-full-2015-12-09.zip"


def spice_lib_dir() -> Path:
    """Where pycocoevalcap's SPICE looks for the Stanford CoreNLP jars."""
    import pycocoevalcap.spice as spice_package

    return Path(spice_package.__file__).resolve().parent / "lib"


def _check_spice_models() -> None:
    """SPICE would download ~400 MB on first use (and hang offline): fail first with the fix."""
    lib = spice_lib_dir()
    missing = [
        name for name in (f"{SPICE_CORENLP}.jar", f"{SPICE_CORENLP}-models.jar") if not (lib / name).exists()
    ]
    if missing:
        raise WeightsNotFoundError(
            f"SPICE needs the Stanford CoreNLP 3.6.0 jars, missing from {lib}: {', '.join(missing)}. "
            f"Download {SPICE_CORENLP_URL}, unzip, and copy {SPICE_CORENLP}.jar and {SPICE_CORENLP}-models.jar "
            f"into {lib} (or run: python -c 'from pycocoevalcap.spice.get_stanford_models import "
            "get_stanford_models as g; g()' on a machine with internet)."
        )


def _aligned_predictions(references: Mapping, predictions: Mapping) -> dict:
    """The prediction for each reference key, matched by id as text; every id on both sides."""
    if not references:
        raise DataError("no captions to score")
    by_key = {id_key(key): text for key, text in predictions.items()}
    missing = [key for key in references if id_key(key) not in by_key]
    wanted = {id_key(key) for key in references}
    extra = [key for key in predictions if id_key(key) not in wanted]
    if missing or extra:
        raise DataError(
            f"caption ids differ: no prediction for {missing[:20]!r}; no references for {extra[:20]!r}"
        )
    aligned = {}
    for key, captions in references.items():
        if isinstance(captions, str) or not captions or not all(isinstance(c, str) for c in captions):
            raise DataError(f"references[{key!r}] must be a non-empty list of strings")
        aligned[key] = by_key[id_key(key)]
        if not isinstance(aligned[key], str):
            raise DataError(f"predictions[{key!r}] must be a string")
    return aligned


def _tokenize(captions: Mapping[object, Sequence[str]]) -> dict[object, list[str]]:
    from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

    # The tokenizer runs with -preserveLines: any line break inside a caption would shift the lines.
    flat = {key: [{"caption": " ".join(text.split())} for text in texts] for key, texts in captions.items()}
    tokenized = PTBTokenizer().tokenize(flat)
    if set(tokenized) != set(flat):
        raise RuntimeError("PTBTokenizer returned a different set of captions than it was given")
    return tokenized


def _meteor(references: dict, predictions: dict) -> float:
    from pycocoevalcap.meteor.meteor import Meteor

    scorer = Meteor()
    try:
        score, _ = scorer.compute_score(references, predictions)
    finally:  # the Java process otherwise lives until garbage collection, if ever
        with scorer.lock:
            process = scorer.meteor_p
            process.stdin.close()
            process.kill()
            process.wait()
            process.stdout.close()
            process.stderr.close()
    return float(score)


def score_captions(
    references: Mapping[int | str, Sequence[str]], predictions: Mapping[int | str, str], spice: bool = False
) -> dict[str, float]:
    """Corpus scores keyed ``Bleu_1..Bleu_4, METEOR, ROUGE_L, CIDEr`` (``SPICE`` with ``spice=True``)."""
    aligned = _aligned_predictions(references, predictions)
    if shutil.which("java") is None:
        raise JavaNotFoundError(
            "caption metrics need Java on PATH (pycocoevalcap runs Java tools); install JDK 11+"
        )
    if spice:
        _check_spice_models()
    from pycocoevalcap.bleu.bleu import Bleu
    from pycocoevalcap.cider.cider import Cider
    from pycocoevalcap.rouge.rouge import Rouge

    gts = _tokenize(references)
    res = _tokenize({key: [text] for key, text in aligned.items()})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    scores = {f"Bleu_{n}": float(value) for n, value in enumerate(bleu, start=1)}
    scores["METEOR"] = _meteor(gts, res)
    scores["ROUGE_L"] = float(Rouge().compute_score(gts, res)[0])
    scores["CIDEr"] = float(Cider().compute_score(gts, res)[0])
    if spice:
        from pycocoevalcap.spice.spice import Spice

        scores["SPICE"] = float(Spice().compute_score(gts, res)[0])
    return scores


def load_caption_references(path: str | os.PathLike) -> dict[int | str, list[str]]:
    """COCO-style ``{"annotations": [...]}`` or a list / JSON lines of ``{image_id, caption}``."""
    try:
        document = read_json(path)
    except DataError:
        # Not one JSON document: JSON lines, or a file the record reader rejects with its own
        # message (line number, not UTF-8, ...).
        document = None
    if isinstance(document, dict) and isinstance(document.get("annotations"), list):
        items = [(f"{path}: annotations[{i}]", item) for i, item in enumerate(document["annotations"])]
    elif isinstance(document, list):
        items = [(f"{Path(path)}: item {i}", item) for i, item in enumerate(document)]
    else:
        items = read_records(path)
    references: dict[int | str, list[str]] = {}
    for where, raw in items:
        item = require_object(raw, where)
        references.setdefault(require_id(item, "image_id", where), []).append(
            require_str(item, "caption", where)
        )
    return references


def load_caption_predictions(path: str | os.PathLike) -> dict[int | str, str]:
    """A list / JSON lines of ``{image_id, caption}``, one per image."""
    return read_texts_by_id(path, "image_id", "caption")
