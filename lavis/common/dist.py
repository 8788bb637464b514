"""torch.distributed helpers that also work with a single process and no process group."""

from __future__ import annotations

import datetime
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


def is_dist() -> bool:
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    return dist.get_rank() if is_dist() else 0


def get_world_size() -> int:
    return dist.get_world_size() if is_dist() else 1


def is_main_process() -> bool:
    return get_rank() == 0


def barrier() -> None:
    if is_dist():
        dist.barrier()


@dataclass(frozen=True)
class DistEnv:
    rank: int
    local_rank: int
    world_size: int


def read_env() -> DistEnv:
    """Rank info from torchrun (RANK/LOCAL_RANK/WORLD_SIZE) or SLURM (SLURM_PROCID...)."""
    env = os.environ
    if "RANK" in env and "WORLD_SIZE" in env:
        return DistEnv(int(env["RANK"]), int(env.get("LOCAL_RANK", 0)), int(env["WORLD_SIZE"]))
    if "SLURM_PROCID" in env and int(env.get("SLURM_NTASKS", "1")) > 1:
        return DistEnv(int(env["SLURM_PROCID"]), int(env.get("SLURM_LOCALID", 0)), int(env["SLURM_NTASKS"]))
    return DistEnv(0, 0, 1)


def init_distributed(device_type: str, timeout_minutes: int = 30) -> DistEnv:
    """Join the process group when launched with several processes; no-op for one.

    gloo on CPU, NCCL on CUDA. Under SLURM without torchrun, MASTER_ADDR/MASTER_PORT must be set
    (e.g. ``export MASTER_ADDR=$(scontrol show hostnames $SLURM_NODELIST | head -n1)``).
    """
    info = read_env()
    if info.world_size == 1 or is_dist():
        return info
    os.environ.setdefault("RANK", str(info.rank))
    os.environ.setdefault("WORLD_SIZE", str(info.world_size))
    os.environ.setdefault("LOCAL_RANK", str(info.local_rank))
    if "MASTER_ADDR" not in os.environ or "MASTER_PORT" not in os.environ:
        raise RuntimeError(
            "several processes but MASTER_ADDR/MASTER_PORT are not set: launch with torchrun, "
            "or export them in the SLURM script"
        )
    backend = "nccl" if device_type == "cuda" else "gloo"
    if device_type == "cuda":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(
        backend=backend,
        rank=info.rank,
        world_size=info.world_size,
        timeout=datetime.timedelta(minutes=timeout_minutes),
    )
    return info


def destroy_distributed() -> None:
    global _HOST_GROUP
    if is_dist():
        dist.destroy_process_group()
    _HOST_GROUP = None


_HOST_GROUP: object = None  # a gloo group over the same ranks, for host-side flags (made on first use)


def host_all_reduce(values: list[int], op: str = "max") -> list[int]:
    """Small host integers reduced element-wise (``max`` or ``sum``) over every rank, without
    touching the GPU.

    With NCCL a flag on the device would make the host wait for the device's queue at each
    read; this reduces a CPU tensor over a gloo group instead (every rank must call it at the
    same point, as with any collective)."""
    global _HOST_GROUP
    if get_world_size() == 1:
        return list(values)
    if _HOST_GROUP is None:
        _HOST_GROUP = dist.new_group(backend="gloo") if dist.get_backend() != "gloo" else dist.group.WORLD
    flags = torch.tensor(values, dtype=torch.int64)
    dist.all_reduce(flags, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM, group=_HOST_GROUP)
    return flags.tolist()


@torch.no_grad()
def all_gather_no_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate ``tensor`` from every rank along dim 0 (equal shapes); no gradient flows."""
    if get_world_size() == 1:
        return tensor
    parts = [torch.empty_like(tensor) for _ in range(get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return torch.cat(parts, dim=0)


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradients and returns this rank's slice."""

    @staticmethod
    def forward(ctx, tensor: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, tensor.contiguous())
        return torch.cat(parts, dim=0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        grad = grad.contiguous()
        dist.all_reduce(grad)
        size = grad.shape[0] // dist.get_world_size()
        rank = dist.get_rank()
        return grad[rank * size : (rank + 1) * size]


def all_gather_with_grad(tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate from every rank; gradients flow back to each rank's own slice."""
    if get_world_size() == 1:
        return tensor
    return _GatherWithGrad.apply(tensor)


def all_gather_object(obj: object) -> list[object]:
    """Gather any picklable object from every rank (a list with one entry for one process)."""
    if get_world_size() == 1:
        return [obj]
    out: list[object] = [None] * get_world_size()
    dist.all_gather_object(out, obj)
    return out


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank (itself without a process group)."""
    if not is_dist():
        return obj
    holder = [obj]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def resolve_device(name: str | torch.device, key: str = "device") -> torch.device:
    """``run.device`` / ``--device`` (auto | cpu | cuda | cuda:N) -> the device; ``cuda`` means this
    process's local rank. A GPU asked for and not there is a config error (naming ``key``) here,
    not a crash later."""
    from lavis.common.errors import ConfigError

    name = str(name)
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", read_env().local_rank)
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"{key}: {name!r} is not a device; expected auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and device.index is None:
        device = torch.device("cuda", read_env().local_rank)
    if device.type == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ConfigError(
                f"{key}={name}, but torch sees no CUDA GPU here (CUDA_VISIBLE_DEVICES="
                f"{os.environ.get('CUDA_VISIBLE_DEVICES', 'unset')!r}, CUDA build: {torch.version.cuda or 'no'}); "
                f"use {key}=cpu, or auto to take a GPU when there is one"
            )
        if device.index >= count:
            raise ConfigError(f"{key}={name}: GPU {device.index} asked for, but only {count} visible")
    return device
