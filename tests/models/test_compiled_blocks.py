"""``model.compile``: the repeated blocks of the ViT, the Q-Former and the LLM compiled in place,
with the step's math and the parameter names unchanged.

The equality test compiles with the ``aot_eager`` backend: dynamo captures the same graphs and
AOT autograd builds the same joint forward/backward graph that inductor then turns into kernels;
inductor's own code generation takes minutes per model on a shared 2-core CPU, so that part is
checked on the GPU by ``python -m benchmarks.gpu_recipe`` (``compiled_vs_eager`` per phase).
"""

from __future__ import annotations

import pytest
import torch

from benchmarks.step_check import compare, loss_and_grads
from lavis.common.errors import ConfigError
from lavis.models.compiled_blocks import compile_blocks, repeated_blocks

NO_DROPOUT = {"hidden_dropout": 0.0, "attention_dropout": 0.0}


def compiled(module: torch.nn.Module) -> bool:
    return getattr(module, "_compiled_call_impl", None) is not None


def test_the_config_switch_compiles_every_block_and_keeps_parameter_names(build_tiny):
    eager = build_tiny("blip2_t5_instruct")
    model = build_tiny("blip2_t5_instruct", compile=True)
    blocks = [*model.visual_encoder.blocks, *model.Qformer.bert.encoder.layer,
              *model.llm.encoder.block, *model.llm.decoder.block]
    assert blocks and all(compiled(b) for b in blocks)
    assert {id(b) for b in repeated_blocks(model)} == {id(b) for b in blocks}
    assert not compiled(model) and not compiled(model.Qformer) and not compiled(model.llm)  # glue stays eager
    assert list(model.state_dict()) == list(eager.state_dict())
    assert list(model.trainable_state_dict()) == list(eager.trainable_state_dict())


def test_an_unknown_compile_mode_is_a_config_error_naming_the_key(build_tiny):
    with pytest.raises(ConfigError, match="compile_mode.*reduce-overhead"):
        build_tiny("blip2_t5_instruct", compile=True, compile_mode="fastest")


def test_compiled_step_equals_the_eager_step(build_tiny, make_batch):
    """Loss and every trainable gradient (Q-Former, queries, projection, ln_vision), fp32."""
    batch = make_batch(3)
    model = build_tiny("blip2_t5_instruct", qformer=NO_DROPOUT).train()

    def loss() -> torch.Tensor:
        return model(batch)["loss"]

    import torch._dynamo
    from torch._dynamo.utils import counters

    torch._dynamo.reset()  # no frame left marked "skip" by an earlier test in this process
    eager = loss_and_grads(model, loss)
    assert compile_blocks(model, backend="aot_eager") == 2 + 2 + 4  # ViT, Q-Former, T5 encoder + decoder
    graphs = counters["stats"]["unique_graphs"]
    result = compare(eager, loss_and_grads(model, loss), "float32")
    assert counters["stats"]["unique_graphs"] >= graphs + 4  # the step really ran compiled blocks
    assert result["parameters"] > 10 and result["loss_eager"] > 0
    assert result["equal"], result
