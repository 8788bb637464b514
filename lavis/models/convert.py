"""Convert BLIP-2 / InstructBLIP / CLOVER weights between Hugging Face, LAVIS and our formats.

    python -m lavis.models.convert --from hf --to ours --src Salesforce/instructblip-vicuna-7b --out converted/ivicuna
    python -m lavis.models.convert --from lavis --to hf --src instruct_blip_vicuna7b_trimmed.pth \\
        --arch blip2_vicuna_instruct --model-type vicuna7b --out hf/ivicuna
    python -m lavis.models.convert --from ours --to hf --src converted/ivicuna --out hf/ivicuna --verify
    python -m lavis.models.convert --from ours --to hf --src runs/clover/checkpoints/best --out hf/clover \
        --push-to-hub user/clover-flant5xl

Sources: ``hf`` (an HF checkpoint folder or hub id; its config decides the architecture), ``lavis``
(a LAVIS ``.pth``, built as ``--arch`` / ``--model-type``; the LLM and, for trimmed checkpoints,
the encoder come from that config's sources), ``ours`` (a folder written by ``--to ours``, or a
training checkpoint with ``--arch`` / ``--model-type``). Targets: ``hf`` (``to_hf``) and ``ours``
(:func:`lavis.models.interop.save_model_folder`). ``--set key=value`` overrides config keys, e.g.
``--set llm.name_or_path=/models/vicuna-7b-v1.1``. ``--verify`` reloads what was written and
compares its LLM logits with the source model's on a random image. ``--push-to-hub REPO`` uploads
the written folder with a model card (the conversation contract, and for a run's checkpoint the
run's evaluation figures and training config; :mod:`lavis.models.interop.hub`).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from lavis.common.errors import ConfigError, LavisError

SOURCES = ("hf", "lavis", "ours")
TARGETS = ("hf", "ours")
PROMPTS = ("What does this image show?", "Is there necrosis?")
ANSWERS = ("a tissue section", "no")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m lavis.models.convert", description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="source", required=True, choices=SOURCES, help="format of --src")
    parser.add_argument("--to", dest="target", required=True, choices=TARGETS, help="format to write")
    parser.add_argument("--src", required=True, help="checkpoint file, folder or hub id")
    parser.add_argument("--out", required=True, help="folder to write")
    parser.add_argument("--arch", help="our architecture (lavis sources; ours without config.yaml)")
    parser.add_argument("--model-type", help="its model_type (configs/models/<arch>/<model_type>.yaml)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override (repeatable)")
    parser.add_argument("--dtype", choices=("bf16", "fp16", "fp32"), help="precision of the encoder and LLM")
    parser.add_argument("--verify", action="store_true", help="reload the output and compare logits")
    parser.add_argument("--atol", type=float, default=None, help="--verify tolerance (default: 1e-4 fp32, 5e-2 otherwise)")
    parser.add_argument("--push-to-hub", metavar="REPO", help="upload --out to this Hugging Face repo with a model card")
    parser.add_argument("--private", action="store_true", help="create the --push-to-hub repo private")
    return parser.parse_args(argv)


def parse_overrides(pairs: Sequence[str]) -> dict[str, Any]:
    """``["llm.dtype=fp32", "max_txt_len=64"]`` -> nested mapping; values read as YAML scalars."""
    import yaml

    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set expects KEY=VALUE (e.g. llm.name_or_path=/models/vicuna), got {pair!r}")
        node = out
        *parents, leaf = key.strip().split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"--set {pair!r}: '{part}' was already set to a value")
        node[leaf] = yaml.safe_load(value)
    return out


def _check_combination(args: argparse.Namespace) -> None:
    if args.source == args.target:
        raise ConfigError(f"--from {args.source} --to {args.target}: nothing to convert")
    named = args.arch is not None or args.model_type is not None
    if args.source == "hf" and named:
        raise ConfigError("--from hf: the checkpoint's config.json decides the architecture; drop --arch/--model-type")
    if args.source == "hf" and args.set:
        raise ConfigError("--from hf takes no --set overrides (only --dtype): the checkpoint defines the model")
    if args.source == "lavis" and not (args.arch and args.model_type):
        raise ConfigError(
            "--from lavis needs --arch and --model-type (e.g. --arch blip2_t5_instruct --model-type flant5xl): "
            "a .pth holds weights, not the architecture"
        )
    if named and not (args.arch and args.model_type):
        raise ConfigError("give --arch and --model-type together")


def load_source(args: argparse.Namespace, overrides: dict[str, Any]) -> Any:
    from lavis.models import from_hf, load_model
    from lavis.models.interop.folder import CONFIG_NAME, load_model_folder

    if args.source == "ours" and not Path(args.src).exists():
        raise ConfigError(f"--src {args.src}: no such file or folder")
    if args.source == "hf":
        return from_hf(args.src, dtype=args.dtype)[0]
    if args.dtype:
        overrides.setdefault("llm", {})["dtype"] = args.dtype
        overrides.setdefault("vision", {})["precision"] = args.dtype
    if args.source == "ours" and (Path(args.src) / CONFIG_NAME).is_file():
        return load_model_folder(args.src, **overrides)
    if not (args.arch and args.model_type):
        raise ConfigError(
            f"--from ours: '{args.src}' has no {CONFIG_NAME}; for a training checkpoint give --arch and --model-type"
        )
    return load_model(args.arch, args.model_type, checkpoint=args.src, is_eval=True, **overrides)


def source_contract(model: Any, args: argparse.Namespace) -> Any:
    """The source's conversation contract: a run checkpoint's provenance record, else the model config's."""
    from pathlib import Path

    from lavis.common.provenance import read_provenance
    from lavis.models.interop.hub import conversation_of

    return conversation_of(model, read_provenance(args.src) if args.source == "ours" and Path(args.src).exists() else None)


def check_out(out: str) -> Path:
    """``--out`` as a new or empty folder whose parent can be written (checked before the model loads)."""
    from lavis.common.output_paths import writable_folder

    path = Path(out)
    if path.exists() and not path.is_dir():
        raise ConfigError(f"--out {path} is a file; name a new folder")
    if path.is_dir() and any(path.iterdir()):
        raise ConfigError(f"--out {path} already holds files; name a new folder (or remove that one): a conversion "
                          "writes a complete folder, and leftovers of another would mix with it")
    writable_folder(path.parent, "--out")
    return path


def write_target(model: Any, args: argparse.Namespace, contract: Any) -> None:
    """Write into a temporary folder beside ``--out`` and rename it into place: a failed write
    (a full disk) leaves no half-written folder. Every file gets the mode the umask gives."""
    from lavis.common.checkpoint import process_umask
    from lavis.models import to_hf
    from lavis.models.interop.folder import save_model_folder

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        if args.target == "hf":
            to_hf(model, tmp, conversation=contract)
        else:
            save_model_folder(model, tmp)
        mask = process_umask()  # writers differ (safetensors makes its files 0600): one mode for all
        for path in [tmp, *tmp.rglob("*")]:
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)
        if out.is_dir():
            out.rmdir()  # empty (check_out)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def push(model: Any, args: argparse.Namespace, contract: Any) -> str:
    """Upload ``args.out`` with its model card; the run folder (figures, config) is the source's, if any."""
    from pathlib import Path

    from lavis.models.interop.hub import model_card, push_to_hub
    from lavis.models.pretrained import run_of_checkpoint

    run_dir = run_of_checkpoint(Path(args.src)) if args.source == "ours" and Path(args.src).exists() else None
    card = model_card(model, args.push_to_hub, contract, run_dir)
    return push_to_hub(args.out, args.push_to_hub, card, args.private)


def verify_samples(model: Any) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(0)
    size = model.visual_encoder.image_size
    return {
        "image": torch.randn(len(PROMPTS), 3, size, size, generator=generator),
        "text_input": list(PROMPTS),
        "text_output": list(ANSWERS),
    }


def verify(model: Any, args: argparse.Namespace) -> float:
    """Largest LLM-logit difference between ``model`` and what was written, reloaded."""
    from transformers import AutoConfig

    from lavis.models.interop.folder import load_model_folder
    from lavis.models.interop.hf_export import hf_model_class
    from lavis.models.interop.parity import hf_lm_logits, max_logit_difference, our_lm_logits

    samples = verify_samples(model)
    ours = our_lm_logits(model, samples)
    if args.target == "hf":
        config = AutoConfig.from_pretrained(args.out)
        reloaded = hf_model_class(config).from_pretrained(args.out, dtype=model.llm.dtype).eval()
        theirs = hf_lm_logits(reloaded, model, samples)
    else:
        theirs = our_lm_logits(load_model_folder(args.out), samples)
    return max_logit_difference(ours, theirs)


def main(argv: Sequence[str] | None = None) -> int:
    from safetensors import SafetensorError

    from lavis.common.output_paths import os_error_text

    args = parse_args(argv)
    try:
        _check_combination(args)
        check_out(args.out)
        model = load_source(args, parse_overrides(args.set))
        contract = source_contract(model, args)
        write_target(model, args, contract)
        print(f"wrote {args.target} checkpoint of {type(model).__name__} to {args.out}")
        if args.verify:
            if not hasattr(model, "llm"):
                raise ConfigError("--verify compares LLM logits: it needs a stage-2 model")
            atol = args.atol if args.atol is not None else (1e-4 if model.llm.dtype == torch.float32 else 5e-2)
            worst = verify(model, args)
            print(f"verify: largest logit difference {worst:.3g} (tolerance {atol:g})")
            if worst > atol:
                print("error: the written checkpoint does not reproduce the source's logits", file=sys.stderr)
                return 1
        if args.push_to_hub:
            print(f"pushed {args.out} to {args.push_to_hub}: {push(model, args, contract)}")
    except LavisError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except OSError as err:  # the disk filled up: nothing of this conversion is left behind
        print(f"error: cannot write --out {args.out}: {os_error_text(err)}", file=sys.stderr)
        return 1
    except SafetensorError as err:  # safetensors' own writer reports a full disk this way
        print(f"error: cannot write --out {args.out}: {str(err).strip()}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
