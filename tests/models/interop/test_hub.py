"""Models out to the Hub and back, against the loopback fake Hub (real huggingface_hub client code):
``convert --to hf --push-to-hub`` with a model card, and ``load_pretrained("user/repo")`` for
transformers' InstructBLIP layout and ours."""

from __future__ import annotations

import json

import pytest
import torch
import yaml
from safetensors.torch import save_file

from lavis.common.conversation import ConversationContract
from lavis.common.provenance import provenance_metadata
from lavis.models import load_pretrained, save_model_folder
from lavis.models.convert import main as convert_main
from lavis.models.interop.hub import model_card, push_to_hub
from lavis.models.interop.parity import our_lm_logits
from tests.datasets.fake_hub import FakeHub

CONTRACT = {"mode": "multi_turn", "history_format": "qa_v1", "max_turns": 3}


@pytest.fixture()
def hub(monkeypatch, tmp_path):
    from huggingface_hub import constants

    server = FakeHub().start()
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", server.write_token)
    monkeypatch.setenv("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # the suite imports it offline
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)  # read at import: the user sets HF_ENDPOINT first
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub_cache"))
    yield server
    server.stop()


def _logits(model, batch, vocab: int | None = None) -> torch.Tensor:
    """LLM logits at the real positions; ``vocab`` drops the rows an export appends (``<image>``)."""
    return torch.cat([row[:, :vocab].flatten() for row in our_lm_logits(model.eval(), batch)])


def _run_folder(tmp_path, source, tiny_overrides) -> tuple:
    """A training run as the runner leaves it: config.yaml, a checkpoint, evaluation metrics."""
    run = tmp_path / "runs" / "clover_tiny"
    best = run / "checkpoints" / "best"
    best.mkdir(parents=True)
    # The trainable tensors and, since the tiny encoder is random (no pretrained weights), the encoder's.
    state = {k: v.contiguous() for k, v in source.state_dict().items() if not k.startswith("t5_model.")}
    # The checkpoint's provenance record names its conversation contract (a multi-turn model here).
    save_file(state, str(best / "model.safetensors"), metadata=provenance_metadata({"conversation": CONTRACT}))
    config = {"model": {"arch": "blip2_t5_instruct", "model_type": "tiny", **tiny_overrides("blip2_t5_instruct")},
              "datasets": {"quilt_vqa": {"storage": "/data/quilt_vqa"}}, "run": {"task": "vqa", "init_lr": 1e-5}}
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    metrics = {"protocols": {"quilt": {"open_recall": 54.33, "closed_accuracy": 71.5}}, "num_questions": 1283}
    (run / "quilt_vqa_test_eval_metrics.json").write_text(json.dumps(metrics))
    return run, best


def test_push_a_run_checkpoint_as_hf_with_its_card_and_load_it_back(hub, tmp_path, build_tiny, tiny_overrides, make_batch):
    source = build_tiny("blip2_t5_instruct", seed=1)
    run, best = _run_folder(tmp_path, source, tiny_overrides)
    sets = [f"{key}.{sub}={value}" for key, section in tiny_overrides("blip2_t5_instruct").items()
            for sub, value in section.items()]
    code = convert_main(["--from", "ours", "--to", "hf", "--src", str(best), "--arch", "blip2_t5_instruct",
                         "--model-type", "tiny", *[a for s in sets for a in ("--set", s)], "--out", str(tmp_path / "hf"),
                         "--push-to-hub", "pathlab/clover-tiny"])  # fmt: skip
    assert code == 0
    files = hub.repos["pathlab/clover-tiny"].files
    assert {"config.json", "model.safetensors", "README.md", "tokenizer_config.json"} <= set(files)
    card = files["README.md"].decode()
    assert "| quilt_vqa_test_eval_metrics.json | protocols.quilt.open_recall | 54.33 |" in card
    assert "num_questions | 1283 |" in card and "init_lr: 1.0e-05" in card
    assert json.dumps(CONTRACT, indent=1) in card
    assert json.loads(files["config.json"])["clover_conversation"] == CONTRACT

    loaded = load_pretrained("pathlab/clover-tiny")
    assert loaded.kind == "hf" and loaded.source == "pathlab/clover-tiny"
    assert loaded.model.cfg.conversation == ConversationContract.from_dict(CONTRACT)  # the HF config's round trip
    batch = make_batch(2)
    vocab = source.llm.get_input_embeddings().weight.shape[0]
    # ln_vision's eps: LAVIS's 1e-5 in ours, HF's 1e-6 after the round trip (see test_to_hf).
    torch.testing.assert_close(_logits(loaded.model, batch, vocab), _logits(source, batch), rtol=1e-4, atol=1e-4)


def test_our_layout_round_trips_through_the_hub(hub, tmp_path, build_tiny, make_batch):
    model = build_tiny("blip2_t5_instruct", seed=3).eval()
    folder = save_model_folder(model, tmp_path / "ours")
    push_to_hub(folder, "pathlab/clover-ours", model_card(model, "pathlab/clover-ours", ConversationContract()))
    files = hub.repos["pathlab/clover-ours"].files
    assert {"config.yaml", "model.safetensors", "README.md"} <= set(files)
    assert '"mode": "single_turn"' in files["README.md"].decode()  # no record, no config: single-turn
    loaded = load_pretrained("pathlab/clover-ours")
    assert loaded.kind == "folder" and loaded.name == "pathlab/clover-ours"
    batch = make_batch(2)
    torch.testing.assert_close(_logits(loaded.model, batch), _logits(model, batch), rtol=0, atol=0)


def test_push_without_a_token_is_refused_and_a_missing_repo_names_itself(hub, tmp_path, build_tiny, monkeypatch):
    from lavis.common.errors import WeightsNotFoundError

    monkeypatch.setenv("HF_TOKEN", "hf_wrong")
    folder = save_model_folder(build_tiny("blip2_t5_instruct", seed=3), tmp_path / "ours")
    with pytest.raises(Exception, match="401"):
        push_to_hub(folder, "pathlab/x", "card")
    with pytest.raises(WeightsNotFoundError, match="pathlab/absent"):
        load_pretrained("pathlab/absent")
