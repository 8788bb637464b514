"""The optimised step (``model.compile``): ``torch.compile`` on a model's repeated blocks.

A small-batch step is bound by kernel launches, not arithmetic: the ViT's 39 blocks, the
Q-Former's 12 layers and the LLM's 24-32 layers each launch dozens of small kernels. Compiling
fuses them (LayerNorms, GELUs, bias adds, residuals) into fewer kernels without changing the math.

What is compiled: every element of an ``nn.ModuleList`` of same-class modules (the transformer
blocks of the ViT, the Q-Former and the LLM), in place with ``nn.Module.compile()``. Why blocks
and not the whole model:

- parameter names, ``state_dict`` keys and checkpoints do not change (no ``_orig_mod.``);
- identical blocks share one compiled graph (torch >= 2.5 inlines module attributes), so the
  compile costs seconds per block kind, not minutes per model;
- the glue between blocks (tokenising, hard-negative sampling, losses, HF's generation loop)
  stays eager, where graph breaks would cost more than they save.

Side effect: torch's process-wide recompile limit is raised to ``RECOMPILE_LIMIT`` (64).
``compile_mode`` is torch's: ``reduce-overhead`` adds CUDA graphs (static shapes only pay off
when batches are padded to fixed lengths), ``max-autotune`` searches matmul kernels.
"""

from __future__ import annotations

from torch import nn

COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
# Graphs one ``forward`` code object may hold. Every block of a class shares it (and every
# transformers layer shares ``GradientCheckpointingLayer``'s): stage 1 alone calls a Q-Former
# layer in 8+ ways (queries alone, text alone, both, text over cached queries; with and without
# cross-attention, grad, dropout), T5 adds encoder, decoder and generation variants; past torch's
# default limit of 8 the rest would silently run eager.
RECOMPILE_LIMIT = 64


def repeated_blocks(module: nn.Module) -> list[nn.Module]:
    """The elements of every ``nn.ModuleList`` of two or more same-class modules under ``module``,
    outermost first (blocks nested inside a chosen block are left to it)."""
    found: list[nn.Module] = []
    pending = [module]
    while pending:
        current = pending.pop()
        for child in current.children():
            if isinstance(child, nn.ModuleList) and len(child) > 1 and len({type(m) for m in child}) == 1:
                found.extend(child)
            else:
                pending.append(child)
    return found


def compile_blocks(module: nn.Module, mode: str = "default", backend: str = "inductor") -> int:
    """Compile every repeated block of ``module`` in place; returns how many were compiled."""
    if mode not in COMPILE_MODES:
        raise ValueError(f"compile mode must be one of {COMPILE_MODES}, got {mode!r}")
    raise_recompile_limit(RECOMPILE_LIMIT)
    blocks = repeated_blocks(module)
    for block in blocks:
        # dynamic=None: a block first compiles for the shapes it sees, then once more with
        # symbolic lengths when another text length arrives (no recompile per batch after that).
        block.compile(backend=backend, mode=None if mode == "default" else mode)
    return len(blocks)


def raise_recompile_limit(limit: int) -> None:
    """Raise torch's per-function graph limit to ``limit`` (never lower it). A process-wide torch
    setting: named ``recompile_limit`` since torch 2.6, ``cache_size_limit`` before."""
    import torch._dynamo.config as dynamo

    name = "recompile_limit" if hasattr(dynamo, "recompile_limit") else "cache_size_limit"
    setattr(dynamo, name, max(getattr(dynamo, name), limit))
