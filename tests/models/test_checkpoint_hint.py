"""A stage-1 checkpoint given to a stage-2 model for evaluation: the error names config keys."""

from __future__ import annotations

import pytest
from safetensors.torch import save_file

from lavis.common.errors import CheckpointError


def test_a_stage1_checkpoint_for_stage2_evaluation_names_model_init_checkpoint(build_tiny, tiny_overrides, tmp_path):
    from lavis.models import load_model

    stage1 = build_tiny("blip2")
    save_file({k: v.contiguous() for k, v in stage1.trainable_state_dict().items()}, str(tmp_path / "stage1.safetensors"))
    with pytest.raises(CheckpointError) as err:
        load_model("blip2_t5_instruct", "tiny", checkpoint=str(tmp_path / "stage1.safetensors"),
                   **tiny_overrides("blip2_t5_instruct"))
    message = str(err.value)
    assert "lacks 2 trainable tensors of this model: ['t5_proj.bias', 't5_proj.weight']" in message
    assert message.endswith(
        "(model.checkpoint (evaluate.py --checkpoint) must hold every trainable tensor of this model: use a "
        "checkpoint trained with it; to start training from a partial one, such as a stage-1 checkpoint for a "
        "stage-2 model, set model.init_checkpoint instead)"
    )
    assert "strict=False" not in message  # a Python option a config user cannot set
