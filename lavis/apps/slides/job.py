"""A slide job: ask one or more questions of every tissue tile of one slide.

Steps: open the slide and plan the reads, detect tissue, list the tissue tiles, then (owning the
output folder) run the tiles in batches: features from the per-slide cache or from pixels read by
DataLoader workers through the frozen encoder, then each question's answers, each batch's answers
written as one small file under ``<question>/.parts/``. When every tile is answered, rank 0 writes
the outputs and ``summary.json`` last, then removes the parts.

Everything that can be wrong with the inputs (slide, question, model, settings, no tissue) fails
before the output folder is touched. A rerun after a kill continues with the tiles that have no
part yet; under torchrun the pending batches are dealt to the ranks, so each tile is answered
exactly once. Batches are consecutive tiles and restart at every gap, so a rerun with the same
``--batch`` meets the same batches as an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lavis.apps.slides import outputs, render
from lavis.apps.slides.features import (
    SlideFeatureCache,
    cache_identity,
    round_trip,
    storage_dtype,
    tiles_digest,
)
from lavis.apps.slides.loader import TileDataset, read_tile, tile_loader
from lavis.apps.slides.plan import ReadPlan, grid_origins, plan_reads
from lavis.apps.slides.questions import Generation, Question, answer, check_questions, resolve
from lavis.apps.slides.reader import SlideReader, open_slide
from lavis.apps.slides.tissue import TissueMask, TissueSettings, detect_tissue
from lavis.common.checkpoint import atomic_write_bytes
from lavis.common.dist import all_gather_object, barrier, broadcast_object, get_rank, get_world_size
from lavis.common.errors import ConfigError, DataError, LavisError
from lavis.common.logger import JsonlWriter

logger = logging.getLogger("lavis.apps.slides")

PARTS = ".parts"
SLIDE_RECORD = "slide.json"


@dataclasses.dataclass
class SlideSettings:
    tile: int | None = None  # tile side given to the model (default: the model's image size)
    stride: int | None = None  # pixels between tile origins at the analysis resolution (default: tile)
    mpp: float | None = None  # wanted microns per pixel (default 0.5 unless magnification is given)
    magnification: float | None = None
    slide_mpp: float | None = None  # the slide's own level-0 um/px when its file has none (or is wrong)
    region: tuple[int, int, int, int] | None = None  # level-0 x, y, w, h to analyse (default: all)
    batch: int = 16
    workers: int = 2
    tissue: TissueSettings = dataclasses.field(default_factory=TissueSettings)
    generation: Generation = dataclasses.field(default_factory=Generation)
    top_k: int = 8
    table: str = "parquet"  # or "csv"
    feature_cache: str | None = None  # cache root (default <out>/features); share it across output folders
    cache_features: bool = True
    amp: torch.dtype | None = None  # autocast dtype for the Q-Former and heads (None: off)
    progress: bool = True

    def validate(self) -> None:
        if self.tile is not None and self.tile < 8:
            raise ConfigError(f"--tile must be at least 8 pixels, got {self.tile}")
        if self.stride is not None and self.stride < 1:
            raise ConfigError(f"--stride must be >= 1 pixel, got {self.stride}")
        if self.generation.max_new_tokens < 1 or self.generation.num_beams < 1:
            raise ConfigError(f"--max-new-tokens and --beams must be >= 1, got {self.generation.max_new_tokens} "
                              f"and {self.generation.num_beams}")
        if self.batch < 1:
            raise ConfigError(f"--batch must be >= 1, got {self.batch}")
        if self.workers < 0:
            raise ConfigError(f"--workers must be >= 0, got {self.workers}")
        if self.table not in ("parquet", "csv"):
            raise ConfigError(f"--table must be parquet or csv, got {self.table!r}")
        if not 0 <= self.tissue.min_tissue <= 1:
            raise ConfigError(f"--min-tissue must be between 0 and 1, got {self.tissue.min_tissue}")
        if self.top_k < 0:
            raise ConfigError(f"--top-k must be >= 0, got {self.top_k}")


@dataclasses.dataclass
class Prepared:
    """What the inputs resolve to, before anything is written."""

    reader: SlideReader
    plan: ReadPlan
    thumbnail: Any  # PIL image of the analysed region
    mask: TissueMask
    grid_tiles: int
    origins: np.ndarray  # (N, 2) level-0 top-left of each tissue tile
    tissue: np.ndarray  # (N,) tissue share of each
    questions: list[Question]


def prepare(loaded: Any, slide: str | os.PathLike | SlideReader, texts: list[str], mode: str,
            settings: SlideSettings) -> Prepared:
    """Check every input and find the tissue tiles; raises a one-line LavisError on bad input.
    ``slide`` is a path or a reader already opened (with ``settings.slide_mpp`` applied)."""
    settings.validate()
    texts = check_questions(texts)
    questions = resolve(texts, mode, loaded)
    reader = slide if isinstance(slide, SlideReader) else open_slide(slide, settings.slide_mpp)
    slide = reader.path
    tile = settings.tile if settings.tile is not None else int(getattr(loaded.vis_processor.cfg, "image_size", 224))
    plan = plan_reads(reader.info, tile, settings.stride, settings.mpp, settings.magnification, settings.region)
    thumbnail, downsample = reader.region_thumbnail(plan.region, settings.tissue.max_side)
    mask = detect_tissue(thumbnail, plan.region[:2], downsample, reader.info.mpp, settings.tissue)
    grid = grid_origins(plan)
    shares = mask.tile_fractions(grid, plan.tile_level0)
    keep = shares >= settings.tissue.min_tissue
    if not keep.any():
        raise DataError(
            f"no tissue found in '{slide}': {mask.fraction:.1%} of the analysed area looks like tissue and no tile of "
            f"{plan.tile_level0} level-0 px is at least {settings.tissue.min_tissue:.0%} tissue (lower --min-tissue, "
            "use smaller tiles, or check that the slide is not blank)"
        )
    return Prepared(reader, plan, thumbnail, mask, len(grid), grid[keep], shares[keep], questions)


def analyze_slide(
    loaded: Any, slide: str | os.PathLike | SlideReader, questions: list[str], out: str | os.PathLike, mode: str = "auto",
    settings: SlideSettings | None = None, on_batch: Callable[[list[int]], None] | None = None,
) -> dict[str, dict[str, Any]]:
    """Run (or continue) the job; returns each question folder's summary (rank 0; {} elsewhere)."""
    from lavis.common.output_lock import lock_output_for_job

    settings = settings or SlideSettings()
    prepared = prepare(loaded, slide, questions, mode, settings)
    out = Path(out)
    with lock_output_for_job(out, "slide analysis"):
        return _Run(loaded, prepared, out, settings, on_batch).run()


class _Run:
    def __init__(self, loaded: Any, prepared: Prepared, out: Path, settings: SlideSettings,
                 on_batch: Callable[[list[int]], None] | None) -> None:
        self.loaded, self.p, self.out, self.s, self.on_batch = loaded, prepared, out, settings, on_batch
        self.model = loaded.model
        self.rank, self.world = get_rank(), get_world_size()
        self.digest = tiles_digest(prepared.origins)
        self.dtype = storage_dtype(self.model)

    # ---- records -------------------------------------------------------------------------
    def slide_identity(self) -> dict[str, Any]:
        return {"slide": self.p.reader.info.content_id, "plan": self.p.plan.as_dict(),
                "tissue": self.s.tissue.as_dict(), "tiles": self.digest}

    def question_identity(self, q: Question) -> dict[str, Any]:
        from lavis.common.tensor_digest import weights_digest

        if not hasattr(self, "_model_digest"):
            self._model_digest = weights_digest([self.model])
        return {"question": q.text, "mode": q.mode, "prompt": q.prompt, "tiles": self.digest,
                "model_weights": self._model_digest,  # the same weights, however the path is spelt
                "generation": dataclasses.asdict(self.s.generation) if q.mode != "retrieval" else None}

    def check_folder(self) -> None:
        """Rank 0: the output folder holds this slide and grid (or nothing yet)."""
        record = self.out / SLIDE_RECORD
        if not record.exists():
            return
        try:
            old = json.loads(record.read_text()).get("identity")
        except ValueError:
            old = None
        if old != json.loads(json.dumps(self.slide_identity())):
            raise ConfigError(
                f"{self.out} holds the analysis of another slide or tile grid (see {record}); one slide and grid per "
                "output folder: use another --out"
            )

    def question_state(self, q: Question) -> str:
        """Rank 0: "done", "todo"; raises when the folder holds another model's or settings' answers."""
        folder = self.out / q.folder
        identity = json.loads(json.dumps(self.question_identity(q)))
        summary = folder / "summary.json"
        if summary.exists():
            if json.loads(summary.read_text()).get("identity") != identity:
                raise ConfigError(f"{folder} already holds answers from another model or settings; use another --out")
            shutil.rmtree(folder / PARTS, ignore_errors=True)  # a kill after the summary was written
            return "done"
        parts = folder / PARTS
        run_file = parts / "run.json"
        if run_file.exists() and json.loads(run_file.read_text()) != identity:
            raise ConfigError(
                f"{folder} holds a partial run of another model or settings ({run_file}); use another --out or "
                f"delete {folder}"
            )
        parts.mkdir(parents=True, exist_ok=True)
        for stale in parts.glob(".*.tmp"):  # temp files of a killed writer
            stale.unlink(missing_ok=True)
        outputs.write_json(run_file, identity)
        return "todo"

    def done_tiles(self, q: Question) -> np.ndarray:
        done = np.zeros(len(self.p.origins), dtype=bool)
        for part in self._parts(q):
            done[part["tiles"]] = True
        return done

    def _parts(self, q: Question) -> list[dict[str, Any]]:
        folder = self.out / q.folder / PARTS
        return [json.loads(p.read_text()) for p in sorted(folder.glob("[0-9]*.json"))]

    def write_slide_record(self, states: dict[str, str]) -> None:
        info, p = self.p.reader.info, self.p
        record = {
            "identity": self.slide_identity(), "slide": info.as_dict(), "plan": p.plan.as_dict(),
            "tissue": {"settings": self.s.tissue.as_dict(), "mask": p.mask.describe(), "mask_file": "tissue_mask.png"},
            "tiles": {"grid": p.grid_tiles, "tissue": len(p.origins)},
            "questions": {q.folder: {"question": q.text, "mode": q.mode, "state": states[q.folder]} for q in p.questions},
        }
        outputs.write_json(self.out / SLIDE_RECORD, record)
        mask = (p.mask.mask * 255).astype(np.uint8)
        from PIL import Image

        atomic_write_bytes(self.out / "tissue_mask.png", render.png_bytes(Image.fromarray(mask)))

    # ---- the run -------------------------------------------------------------------------
    def run(self) -> dict[str, dict[str, Any]]:
        shared: Any = None
        if self.rank == 0:
            try:
                self.check_folder()
                states = {q.folder: self.question_state(q) for q in self.p.questions}
                self.write_slide_record(states)
                pending = {q.folder: ~self.done_tiles(q) for q in self.p.questions if states[q.folder] == "todo"}
                shared = (states, self.batches(pending), pending)
            except LavisError as err:
                shared = err  # every rank raises it, none waits forever
        shared = broadcast_object(shared)
        if isinstance(shared, LavisError):
            raise shared
        states, batches, pending = shared
        start = time.perf_counter()
        todo = [q for q in self.p.questions if states[q.folder] == "todo"]
        cache = self.open_cache() if todo and self.s.cache_features else None
        stats = self.process(batches[self.rank :: self.world], todo, pending, cache) if todo else {}
        barrier()
        gathered = all_gather_object(stats)
        summaries: dict[str, dict[str, Any]] = {}
        if self.rank == 0:
            loop_seconds = time.perf_counter() - start
            for q in self.p.questions:
                if states[q.folder] == "todo":
                    summaries[q.folder] = self.finish(q, gathered, loop_seconds)
                else:
                    summaries[q.folder] = json.loads((self.out / q.folder / "summary.json").read_text())
            self.write_slide_record({q.folder: "done" for q in self.p.questions})
        barrier()
        return summaries

    def batches(self, pending: dict[str, np.ndarray]) -> list[list[int]]:
        """Consecutive runs of at most ``batch`` tiles still pending for some question."""
        if not pending:
            return []
        needed = np.logical_or.reduce(list(pending.values()))
        out: list[list[int]] = []
        current: list[int] = []
        for tile in range(len(needed)):
            if not needed[tile]:
                if current:
                    out.append(current)
                current = []
                continue
            current.append(tile)
            if len(current) == self.s.batch:
                out.append(current)
                current = []
        if current:
            out.append(current)
        return out

    def open_cache(self) -> SlideFeatureCache:
        root = Path(self.s.feature_cache) if self.s.feature_cache else self.out / "features"
        identity = cache_identity(self.model, self.loaded.vis_processor, self.p.reader.info.content_id,
                                  self.p.plan.as_dict(), self.p.origins)
        cache = SlideFeatureCache(root, identity, self.dtype)
        cache.open()
        return cache

    def process(self, batches: list[list[int]], todo: list[Question], pending: dict[str, np.ndarray],
                cache: SlideFeatureCache | None) -> dict[str, Any]:
        """This rank's batches: features, then each question's answers, one part file per batch."""
        from tqdm import tqdm

        uncached = [b for b in batches if cache is None or not cache.has(b)]
        dataset = TileDataset(self.p.reader, self.p.plan, self.p.origins, self.loaded.vis_processor)
        device = self.model.device
        loader = tile_loader(dataset, uncached, self.s.workers, pin_memory=device.type == "cuda")
        pixels = iter(loader) if uncached else iter(())
        total = sum(len(b) for b in batches)
        bar = tqdm(total=total, unit="tile", desc=f"slide ({self.world} proc)" if self.world > 1 else "slide",
                   disable=not (self.s.progress and self.rank == 0), file=sys.stderr, dynamic_ncols=True)
        stats: dict[str, Any] = {"tiles": 0, "from_cache": 0, "features_s": 0.0,
                                 "answers_s": {q.folder: 0.0 for q in todo}}
        metrics = JsonlWriter(self.out / "metrics.jsonl")  # rank 0: one line per batch
        start = time.perf_counter()
        for tiles in batches:
            t0 = time.perf_counter()
            cached = cache is not None and cache.has(tiles)
            if cached:
                features = cache.get(tiles).to(device).float()
                stats["from_cache"] += len(tiles)
            else:
                numbers, images = _next_batch(pixels)
                if numbers != tiles:
                    raise RuntimeError(f"tile loader out of order: expected {tiles[:3]}..., got {numbers[:3]}...")
                features = round_trip(self.model.encode_image_frozen(images.to(device, non_blocking=True)), self.dtype)
                if cache is not None:
                    cache.put(tiles, features)
            _sync(device)  # so that GPU work is timed where it happens
            stats["features_s"] += time.perf_counter() - t0
            for q in todo:
                rows = [i for i, t in enumerate(tiles) if pending[q.folder][t]]
                if not rows:
                    continue
                t1 = time.perf_counter()
                with self.model.autocast(self.s.amp):
                    scores, texts = answer(self.model, q, features[rows], self.s.generation)
                seconds = time.perf_counter() - t1
                stats["answers_s"][q.folder] += seconds
                subset = [tiles[i] for i in rows]
                part = {"tiles": subset, "scores": scores, "answers": texts, "seconds": round(seconds, 4)}
                name = f"{subset[0]:09d}-{len(subset):06d}.json"
                outputs.write_json(self.out / q.folder / PARTS / name, part)
            stats["tiles"] += len(tiles)
            bar.update(len(tiles))
            elapsed = time.perf_counter() - start
            metrics.write("slide_batch", tiles[0], tiles=len(tiles), cached_features=cached,
                          seconds=round(time.perf_counter() - t0, 4), tiles_per_s=round(stats["tiles"] / elapsed, 3))
            if self.on_batch is not None:
                self.on_batch(tiles)
        bar.close()
        if cache is not None:
            cache.close()
        return stats

    # ---- outputs (rank 0) ----------------------------------------------------------------
    def finish(self, q: Question, gathered: list[dict[str, Any]], loop_seconds: float) -> dict[str, Any]:
        start = time.perf_counter()
        n = len(self.p.origins)
        scores: list[float | None] = [None] * n
        texts = [""] * n
        seen = np.zeros(n, dtype=np.int64)
        for part in self._parts(q):
            for tile, score, text in zip(part["tiles"], part["scores"], part["answers"], strict=True):
                scores[tile], texts[tile] = score, text
                seen[tile] += 1
        if (seen != 1).any():
            missing, twice = int((seen == 0).sum()), int((seen > 1).sum())
            raise RuntimeError(f"{self.out / q.folder}: {missing} tiles without an answer, {twice} answered twice")
        folder = self.out / q.folder
        plan, info = self.p.plan, self.p.reader.info
        frame = outputs.tiles_frame(self.p.origins, plan.tile_level0, plan.level, self.p.tissue, scores, texts)
        files = {"table": outputs.write_table(frame, folder, self.s.table).name}
        collection = outputs.geojson(frame, q.mode, q.text, f"{info.content_id}:{self.digest}")
        files["geojson"] = outputs.write_geojson(collection, folder).name
        subtitle = (f"{self.loaded.name} | {q.mode} | {len(frame)} tissue tiles of {plan.tile} px at "
                    f"{plan.mpp:.3g} um/px | {Path(info.path).name}")
        thumb_ds = self.p.mask.downsample
        atomic_write_bytes(folder / "heatmap.png", render.heatmap_png(
            self.p.thumbnail, plan.region[:2], thumb_ds, frame, q.mode, q.text, subtitle))
        files["heatmap"] = "heatmap.png"
        top = render.top_rows(frame, q.mode, self.s.top_k) if self.s.top_k else frame.head(0)
        if len(top):
            atomic_write_bytes(folder / "top_tiles.png", render.top_tiles_png(
                top, lambda x, y: read_tile(self.p.reader, plan, x, y), q.mode, q.text))
            files["top_tiles"] = "top_tiles.png"
        seconds = {
            "run": round(loop_seconds, 3),  # the batch loop of this run, all questions, wall clock
            "features": round(sum(g.get("features_s", 0.0) for g in gathered), 3),  # reads + encoder, summed over ranks
            "answers": round(sum(g.get("answers_s", {}).get(q.folder, 0.0) for g in gathered), 3),  # this question
            "outputs": round(time.perf_counter() - start, 3),
        }
        summary = self.summary(q, frame, top, gathered, seconds, files)
        outputs.write_json(folder / "summary.json", summary)  # last: its presence means done
        shutil.rmtree(folder / PARTS, ignore_errors=True)
        logger.info("%s: %d tiles -> %s", q.text, len(frame), folder)
        return summary

    def summary(self, q: Question, frame: Any, top: Any, gathered: list[dict[str, Any]], seconds: dict[str, float],
                files: dict[str, str]) -> dict[str, Any]:
        info, plan = self.p.reader.info, self.p.plan
        this_run = sum(g.get("tiles", 0) for g in gathered)
        scores = frame["score"].to_numpy(dtype=np.float64)
        finite = scores[np.isfinite(scores)]
        score_stats: dict[str, Any] = {}
        if finite.size:
            score_stats = {"mean": float(finite.mean()), "min": float(finite.min()), "max": float(finite.max())}
            if q.mode == "closed":
                score_stats["yes_fraction"] = float((finite >= 0.5).mean())
        else:
            score_stats = {"answers": frame["answer"].astype(str).value_counts().head(10).to_dict()}
        return {
            "question": q.text, "mode": q.mode, "prompt": q.prompt,
            "model": {"name": self.loaded.name, "source": self.loaded.source, "kind": self.loaded.kind},
            "slide": {k: v for k, v in info.as_dict().items() if k not in ("level_dimensions", "level_downsamples")},
            "settings": {
                "mpp": round(plan.mpp, 5), "tile": plan.tile, "stride_level0": plan.stride_level0, "level": plan.level,
                "read_size": plan.read_size, "tile_level0": plan.tile_level0, "region": list(plan.region),
                "batch": self.s.batch, "workers": self.s.workers, "processes": self.world,
                "min_tissue": self.s.tissue.min_tissue, "generation": dataclasses.asdict(self.s.generation),
                "feature_cache": self.s.cache_features,
            },
            "tiles": {"grid": self.p.grid_tiles, "analysed": len(frame), "this_run": this_run,
                      "features_from_cache": sum(g.get("from_cache", 0) for g in gathered)},
            "tissue_fraction": round(self.p.mask.fraction, 4),
            "seconds": seconds,
            "tiles_per_s": round(this_run / seconds["run"], 3) if this_run and seconds["run"] > 0 else None,
            "scores": score_stats,
            "top": [{"tile": int(r.tile), "x": int(r.x), "y": int(r.y), "score": None if np.isnan(r.score) else float(r.score),
                     "answer": str(r.answer)} for r in top.itertuples(index=False)],
            "outputs": files,
            "identity": self.question_identity(q),
        }


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _next_batch(pixels: Any) -> tuple[list[int], torch.Tensor]:
    """The next batch of pixels; a LavisError raised in a DataLoader worker comes back with the
    worker's traceback in its message, so keep only the original one-line message."""
    try:
        return next(pixels)
    except LavisError as err:
        text = str(err)
        if "Original Traceback" not in text:
            raise
        last = [line for line in text.strip().splitlines() if line.strip()][-1]
        message = last.split(": ", 1)[1] if ": " in last else last  # "lavis.common.errors.DataError: ..."
        raise type(err)(message) from None
