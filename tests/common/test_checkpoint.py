import pytest
import torch

from lavis.common import checkpoint as ckpt
from lavis.common.errors import CheckpointError
from lavis.models.base_model import BaseModel


class Tiny(BaseModel):
    def __init__(self):
        super().__init__()
        self.encoder = torch.nn.Linear(3, 3).requires_grad_(False)
        self.head = torch.nn.Linear(3, 2)


def test_crash_during_save_leaves_previous_checkpoint_loadable(tmp_path, monkeypatch):
    model = Tiny()
    root = tmp_path / "checkpoints"
    ckpt.save_checkpoint(root / "step_1", model.trainable_state_dict(), {"global_step": 1})
    saved = model.head.weight.detach().clone()

    def exploding_save(obj, handle, *args, **kwargs):
        handle.write(b"half a pickle")
        raise OSError("disk full")

    monkeypatch.setattr(torch, "save", exploding_save)
    with torch.no_grad():
        model.head.weight.add_(1.0)
    with pytest.raises(OSError, match="disk full"):
        ckpt.save_checkpoint(root / "step_2", model.trainable_state_dict(), {"global_step": 2})
    monkeypatch.undo()

    assert ckpt.latest_checkpoint(root) == root / "step_1"
    assert not (root / "step_2").exists()
    assert [p.name for p in root.iterdir()] == ["step_1"]  # the temp folder was cleaned up
    fresh = Tiny()
    fresh.load_trainable_state_dict(ckpt.load_weights(root / "step_1"))
    assert ckpt.load_state(root / "step_1")["global_step"] == 1
    assert torch.equal(fresh.head.weight, saved)


def test_stale_temp_folders_are_ignored_and_pruned(tmp_path):
    root = tmp_path / "checkpoints"
    model = Tiny()
    for step in (1, 2, 3):
        ckpt.save_checkpoint(root / f"step_{step}", model.trainable_state_dict(), {"global_step": step})
    (root / ".step_4.abc.tmp").mkdir()  # what a SIGKILL mid-save leaves behind
    assert ckpt.latest_checkpoint(root).name == "step_3"
    ckpt.prune_checkpoints(root, keep_last=2)
    assert sorted(p.name for p in root.iterdir()) == ["step_2", "step_3"]


def test_loading_checks_keys_against_the_trainable_set(tmp_path):
    model = Tiny()
    state = model.trainable_state_dict()
    with pytest.raises(CheckpointError, match=r"missing \['head.bias'\].*unexpected \['extra'\]"):
        model.load_trainable_state_dict({"head.weight": state["head.weight"], "extra": torch.zeros(1)})
    with pytest.raises(CheckpointError, match="'head.weight' has shape"):
        model.load_trainable_state_dict({**state, "head.weight": torch.zeros(5, 5)})
    assert set(state) == {"head.weight", "head.bias"}  # frozen encoder not stored


def test_state_is_loaded_with_weights_only_and_rng_round_trips(tmp_path):
    import random

    import numpy as np

    rng = ckpt.capture_rng_state()
    expected = (torch.rand(3), np.random.rand(3), random.random())
    ckpt.save_checkpoint(tmp_path / "step_1", {"w": torch.zeros(1)}, {"rng": [rng]})
    ckpt.restore_rng_state(ckpt.load_state(tmp_path / "step_1")["rng"][0])
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0]) and np.array_equal(expected[1], again[1]) and expected[2] == again[2]


def test_corrupt_weights_fail_clearly(tmp_path):
    (tmp_path / "step_1").mkdir()
    (tmp_path / "step_1" / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="cannot read weights"):
        ckpt.load_weights(tmp_path / "step_1")


def test_last_link_follows_the_newest_step(tmp_path):
    root = tmp_path / "checkpoints"
    model = Tiny()
    for step in (1, 2):
        path = ckpt.save_checkpoint(root / f"step_{step}", model.trainable_state_dict(), {"global_step": step})
        ckpt.link_last(root, path)
    assert (root / "last").resolve() == (root / "step_2").resolve()
    assert ckpt.load_state(root / "last")["global_step"] == 2
    assert ckpt.latest_checkpoint(root).name == "step_2"  # the link is not a checkpoint of its own
