"""Command-line options that ``lavis.apps.serve``, ``lavis.apps.chat`` and ``lavis.apps.predict`` share: which
model, where it runs, and how it generates."""

from __future__ import annotations

import argparse
import logging
from typing import Any

import yaml

from lavis.apps.inference.answerer import Answerer, Decoding
from lavis.common.errors import ConfigError

# Talking to a model: a short answer ("yes", "dense") must be possible, so the minimum length is 1
# (CLOVER's evaluation uses 5: lavis.apps.predict keeps evaluate.py's defaults).
CHAT_DEFAULTS = {"max_new_tokens": 64, "min_new_tokens": 1, "num_beams": 5}


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="a run's checkpoint folder (runs/X/checkpoints/last) or run folder, a converted "
                             "folder, a Hugging Face BLIP-2/InstructBLIP folder, or a weights file with --config")
    parser.add_argument("--config", default=None, help="for a weights file: the run/model YAML that built it")
    parser.add_argument("--device", default="auto", help="auto (a GPU when there is one), cpu, cuda, cuda:1, ...")
    parser.add_argument("--precision", default=None, choices=["bf16", "fp16", "fp32"],
                        help="dtype of the frozen image encoder and LLM (default: the model's own)")
    parser.add_argument("--history", default=None, metavar="FORMAT",
                        help="experiments: fold earlier turns in this history format (e.g. qa_v1) although the "
                             "model was tuned otherwise, or 'none' to answer each question alone (default: "
                             "the model's own conversation contract; an override is logged)")
    parser.add_argument("--generation", nargs="+", default=[], metavar="KEY=VALUE",
                        help="decoding defaults, e.g. num_beams=5 max_new_tokens=40 min_new_tokens=1 "
                             "length_penalty=-1 (the keys of a config's run.generation)")


def parse_generation(items: list[str]) -> dict[str, Any]:
    """``["num_beams=3", "length_penalty=-1"]`` -> typed values (YAML scalars)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--generation '{item}': expected KEY=VALUE, e.g. num_beams=5")
        out[key.strip()] = yaml.safe_load(value)
    return out


def load_answerer(args: argparse.Namespace, chat: bool = True) -> tuple[Answerer, Decoding]:
    """The model of ``--model`` and the default decoding: ``CHAT_DEFAULTS`` (when ``chat``), then the
    run's own ``run.generation``, then ``--generation``; each value checked (``--generation`` before
    the model loads, the answer length against the model after)."""
    from lavis.models import load_pretrained

    defaults, given = CHAT_DEFAULTS if chat else {}, parse_generation(args.generation)
    Decoding.from_generation({**defaults, **given}, where="--generation")
    logging.getLogger("lavis").info("loading %s ...", args.model)
    loaded = load_pretrained(args.model, args.device, args.precision, config=args.config, require="answer")
    answerer = Answerer(loaded, args.precision, getattr(args, "history", None))
    decoding = Decoding.from_generation({**defaults, **loaded.generation, **given})
    return answerer, answerer.check_length(decoding)
