"""The pre-flight run: every check in order, into one report. Nothing is loaded into memory but
configs, tokenizers and file headers; the model is built on the meta device to count it."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from typing import Any

from lavis.apps.doctor.checkpoints import check_checkpoints
from lavis.apps.doctor.context import Context
from lavis.apps.doctor.data import check_data
from lavis.apps.doctor.report import FAIL, PASS, WARN, Report
from lavis.apps.doctor.resources import check_disk, check_gpu_memory
from lavis.apps.doctor.weights import check_llm, check_qformer, check_vision
from lavis.common.errors import LavisError


def build_meta_model(cfg: Any) -> tuple[Any, str | None]:
    """(the model on the meta device, None) or (None, why it could not be built)."""
    import torch

    from lavis.models import MODELS

    try:
        with torch.device("meta"):
            return MODELS.get(cfg.model.arch).from_config(cfg.model, load_weights=False), None
    except TypeError:
        return None, f"{cfg.model.arch} cannot be built without its weights (from_config has no load_weights)"
    except (LavisError, OSError, ValueError) as err:
        first = str(err).splitlines()[0].split(" (")[0]  # the what, without the library's long advice
        return None, f"{type(err).__name__}: {first}"


def network(report: Report) -> bool:
    """A line saying whether sources can be fetched; an unreachable Hub is checked as offline, so
    the checks below ask only the local caches (instead of retrying every file for minutes)."""
    import urllib.request

    from lavis.datasets.download.hub import HubSettings
    from lavis.models.vision.weights import offline_mode

    if offline_mode():
        report.add("network", PASS, "offline (HF_HUB_OFFLINE): every source must already be on disk")
        return False
    endpoint = HubSettings.from_env().endpoint
    try:
        urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=5).close()
    except OSError as err:
        if not getattr(err, "code", None):  # an HTTP status means the host answered
            report.add("network", WARN, f"cannot reach {endpoint} ({err}): checking as if offline")
            return True
    report.add("network", PASS, f"{endpoint} reachable: sources not on disk would be downloaded")
    return False


@contextlib.contextmanager
def offline_for_this_check(switch: bool):
    """Treat the Hub as offline inside the block (this process only), then restore."""
    if not switch:
        yield
        return
    from huggingface_hub import constants

    before = os.environ.get("HF_HUB_OFFLINE"), constants.HF_HUB_OFFLINE
    os.environ["HF_HUB_OFFLINE"], constants.HF_HUB_OFFLINE = "1", True
    try:
        yield
    finally:
        constants.HF_HUB_OFFLINE = before[1]
        if before[0] is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = before[0]


def _guarded(ctx: Context, name: str, check) -> None:
    """A check that breaks is a failed line, not a crashed doctor."""
    try:
        check(ctx)
    except Exception as err:  # noqa: BLE001  (report it and keep checking the rest)
        ctx.report.add(name, FAIL, f"the check itself failed: {type(err).__name__}: {err}")


def run_doctor(cfg_path: str, options: Sequence[str] = (), imports: Sequence[str] = (),
               gpu_memory_gib: float | None = None, gpus: int | None = None) -> Report:
    from lavis.runners.assemble import load_run_config

    report = Report()
    try:
        cfg = load_run_config(cfg_path, options, imports)
    except LavisError as err:
        report.add("config", FAIL, str(err))
        return report
    what = "an evaluation (evaluate.py)" if cfg.run.evaluate else "a training run (--evaluate: as evaluate.py)"
    report.add("config", PASS, f"{cfg_path}: model, {len(cfg.datasets)} data set(s) and run validate; "
                               f"checked as {what}")
    ctx = Context(cfg, report, gpu_memory_gib, gpus)
    with offline_for_this_check(network(report)):
        _run_checks(ctx)
    return report


def _run_checks(ctx: Context) -> None:
    cfg = ctx.cfg
    if cfg.model is not None:
        ctx.meta_model, ctx.meta_error = build_meta_model(cfg)
        if isinstance(getattr(cfg.model, "vision", None), dict):
            _guarded(ctx, "vision weights", check_vision)
        if getattr(cfg.model, "qformer", None) is not None:
            _guarded(ctx, "Q-Former", check_qformer)
        if getattr(cfg.model, "llm", None) is not None:
            _guarded(ctx, "LLM", check_llm)
        _guarded(ctx, "checkpoints", check_checkpoints)
    _guarded(ctx, "data", check_data)
    _guarded(ctx, "disk", check_disk)
    if cfg.model is not None:
        _guarded(ctx, "GPU memory", check_gpu_memory)
