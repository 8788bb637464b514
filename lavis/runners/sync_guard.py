"""Count the host synchronisations a block of code makes: reads of a device tensor's value on
the host (``.item()``, ``.tolist()``, ``.cpu()``, ``.numpy()``, ``bool()``, ``float()``,
``int()``, formatting, ``np.asarray``) and ``torch.cuda.synchronize``. Each makes the host wait
until the device has finished everything queued before it.

``with count_host_syncs(device) as syncs: ...`` leaves a list of ``"Tensor.item at file:line"``
entries in ``syncs``. Only tensors on ``device`` count. On the CPU every tensor is on the host,
so reads made inside torch itself are left out there: they are torch's host-side bookkeeping
(AdamW's CPU step counter), which never waits for a GPU; what counts is what our code asks
for. On a CUDA device, ``torch.cuda.set_sync_debug_mode`` also reports the synchronisations made
in torch's C++ (a boolean-mask index, ``nonzero``), which no Python hook sees.
"""

from __future__ import annotations

import contextlib
import os
import sys
import warnings
from collections.abc import Callable, Iterator

import torch

_READS = ("item", "tolist", "cpu", "numpy", "__bool__", "__float__", "__int__", "__index__", "__format__",
          "__repr__", "__array__")
_TORCH_DIR = os.path.dirname(torch.__file__)


@contextlib.contextmanager
def count_host_syncs(device: torch.device | str = "cpu") -> Iterator[list[str]]:
    device = torch.device(device)
    found: list[str] = []
    depth = [0]  # a read inside a read (``__format__`` calling ``item``) counts once

    def record(what: str) -> None:
        frame = sys._getframe(2)
        where = frame.f_code.co_filename
        if device.type != "cpu" or not where.startswith(_TORCH_DIR):
            found.append(f"{what} at {where}:{frame.f_lineno}")

    def watched(name: str, original: Callable) -> Callable:
        def read(self: torch.Tensor, *args, **kwargs):
            if depth[0] == 0 and self.device.type == device.type:
                record(f"Tensor.{name}")
            depth[0] += 1
            try:
                return original(self, *args, **kwargs)
            finally:
                depth[0] -= 1

        return read

    own = {name: torch.Tensor.__dict__.get(name) for name in _READS}
    synchronize = torch.cuda.synchronize
    try:
        for name in _READS:
            setattr(torch.Tensor, name, watched(name, getattr(torch.Tensor, name)))

        def counted_synchronize(*args, **kwargs):
            record("torch.cuda.synchronize")
            return synchronize(*args, **kwargs)

        torch.cuda.synchronize = counted_synchronize
        with _cuda_sync_debug(device, found):
            yield found
    finally:
        torch.cuda.synchronize = synchronize
        for name, method in own.items():
            if method is None:
                delattr(torch.Tensor, name)
            else:
                setattr(torch.Tensor, name, method)


@contextlib.contextmanager
def _cuda_sync_debug(device: torch.device, found: list[str]) -> Iterator[None]:
    """On CUDA, torch's own report of synchronising calls (C++ included), as warnings."""
    if device.type != "cuda":
        yield
        return
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield
        finally:
            torch.cuda.set_sync_debug_mode(previous)
    found.extend(f"cuda sync: {w.message}" for w in caught if "synchroniz" in str(w.message))
