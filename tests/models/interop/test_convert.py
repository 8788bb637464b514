"""Our model folders and ``python -m lavis.models.convert`` in every supported direction."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
import yaml

from lavis.models import from_hf, load_model_folder, save_model_folder
from lavis.models.convert import main
from lavis.models.interop.parity import max_logit_difference, our_lm_logits

from .conftest import lavis_state, save_lavis


def test_model_folder_round_trip(hf_checkpoint, build_tiny, samples, tmp_path):
    converted, _, _ = from_hf(hf_checkpoint("instructblip-t5"))
    folder = save_model_folder(converted, tmp_path / "from_hf")
    # Its LLM lived inside the HF checkpoint, so it is written out, with the Q-Former tokenizer.
    assert (folder / "llm" / "config.json").is_file() and (folder / "qformer_tokenizer" / "tokenizer_config.json").is_file()
    section = yaml.safe_load((folder / "config.yaml").read_text())["model"]
    assert section["llm"]["name_or_path"] == "llm" and section["checkpoint"] == "model.safetensors"
    assert section["ln_vision_eps"] == converted.cfg.ln_vision_eps and section["arch"] == "blip2_t5_instruct"
    reloaded = load_model_folder(folder)
    assert max_logit_difference(our_lm_logits(converted, samples), our_lm_logits(reloaded, samples)) == 0
    native = build_tiny("blip2_vicuna_instruct", seed=4).eval()
    folder = save_model_folder(native, tmp_path / "native")
    assert not (folder / "llm").exists()  # the LLM keeps its own source
    assert yaml.safe_load((folder / "config.yaml").read_text())["model"]["llm"]["name_or_path"] == native.cfg.llm.name_or_path
    assert max_logit_difference(our_lm_logits(native, samples), our_lm_logits(load_model_folder(folder), samples)) == 0
    stage1 = build_tiny("blip2", seed=6).eval()  # heads, temp and the tied ITG decoder too
    again = load_model_folder(save_model_folder(stage1, tmp_path / "stage1"))
    texts = samples["text_input"]
    assert torch.equal(again.itm_score(samples["image"], texts), stage1.itm_score(samples["image"], texts))
    assert torch.equal(again.temp, stage1.temp)


def test_hf_to_ours_to_hf_verified(hf_checkpoint, tmp_path, capsys):
    ours, hf = tmp_path / "ours", tmp_path / "hf"
    assert main(["--from", "hf", "--to", "ours", "--src", str(hf_checkpoint("blip2-llama")), "--out", str(ours), "--verify"]) == 0
    assert main(["--from", "ours", "--to", "hf", "--src", str(ours), "--out", str(hf), "--verify"]) == 0
    out = capsys.readouterr().out
    assert out.count("verify: largest logit difference") == 2 and "Blip2LLM" in out
    assert (hf / "config.json").is_file() and (hf / "processor_config.json").is_file()
    half = tmp_path / "bf16"
    args = ["--from", "hf", "--to", "ours", "--src", str(hf_checkpoint("instructblip-t5")), "--out", str(half)]
    assert main([*args, "--dtype", "bf16", "--verify"]) == 0
    section = yaml.safe_load((half / "config.yaml").read_text())["model"]
    assert section["llm"]["dtype"] == "bf16" and section["vision"]["precision"] == "bf16"
    assert main([*args, "--set", "prompt=Q: {}"]) == 1
    assert "takes no --set overrides" in capsys.readouterr().err


def test_lavis_to_hf_and_ours(build_tiny, tiny_overrides, tmp_path, samples, capsys):
    source = build_tiny("blip2_t5_instruct", seed=5).eval()
    path = save_lavis(tmp_path / "instruct_blip_flanxl_trimmed.pth", lavis_state(source))
    overrides = tiny_overrides("blip2_t5_instruct")
    sets = ["--set", f"llm.name_or_path={overrides['llm']['name_or_path']}",
            "--set", f"qformer.tokenizer={overrides['qformer']['tokenizer']}"]
    named = ["--arch", "blip2_t5_instruct", "--model-type", "tiny"]
    assert main(["--from", "lavis", "--to", "hf", "--src", path, "--out", str(tmp_path / "hf"), "--verify", *named, *sets]) == 0
    assert main(["--from", "lavis", "--to", "ours", "--src", path, "--out", str(tmp_path / "ours"), *named, *sets]) == 0
    reloaded = load_model_folder(tmp_path / "ours")
    assert max_logit_difference(our_lm_logits(source, samples), our_lm_logits(reloaded, samples)) == 0
    assert "verify: largest logit difference" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--from", "hf", "--to", "hf"], "nothing to convert"),
        (["--from", "lavis", "--to", "ours"], "--from lavis needs --arch and --model-type"),
        (["--from", "hf", "--to", "ours", "--arch", "blip2_t5"], "config.json decides the architecture"),
        (["--from", "ours", "--to", "hf"], "--src {src}: no such file or folder"),
        (["--from", "lavis", "--to", "hf", "--arch", "blip2_t5", "--model-type", "tiny", "--set", "llm.dtype"],
         "--set expects KEY=VALUE"),
        (["--from", "lavis", "--to", "hf", "--arch", "blip2_t5", "--model-type", "tiny", "--set", "llm.dtyp=fp32"],
         "unknown config key 'model.llm.dtyp'"),
    ],
)
def test_clear_errors(argv, message, tmp_path, capsys):
    assert main([*argv, "--src", str(tmp_path / "missing.pth"), "--out", str(tmp_path / "out")]) == 1
    assert message.format(src=tmp_path / "missing.pth") in capsys.readouterr().err


def test_a_folder_without_config_asks_for_the_architecture(tmp_path, capsys):
    (tmp_path / "step_100").mkdir()  # a training checkpoint folder: weights, no config.yaml
    assert main(["--from", "ours", "--to", "hf", "--src", str(tmp_path / "step_100"), "--out", str(tmp_path / "o")]) == 1
    assert "has no config.yaml; for a training checkpoint give --arch and --model-type" in capsys.readouterr().err


def test_runs_as_a_module(hf_checkpoint, tmp_path):
    """The real entry point, in a fresh interpreter (no state shared with the test process)."""
    out = tmp_path / "ours"
    result = subprocess.run(
        [sys.executable, "-m", "lavis.models.convert", "--from", "hf", "--to", "ours",
         "--src", str(hf_checkpoint("blip2-t5")), "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    model = load_model_folder(out)
    assert model.cfg.arch == "blip2_t5" and model.t5_proj.weight.dtype == torch.float32
