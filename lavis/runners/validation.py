"""Evaluation in a run: validation every ``run.val_every_n_epochs`` keeping the best checkpoint by
``run.best_metric``, the test splits at the end (with ``best/`` by default), and evaluate-only runs.

Every rank evaluates its share; records are gathered once per item (the sampler's padding
duplicates dropped) and every item is accounted for (:mod:`lavis.runners.eval_coverage`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import torch
from torch.utils.data import Dataset, IterableDataset

from lavis.common import checkpoint as ckpt
from lavis.common.batch import batch_size_of, move_to_device, pop_bookkeeping
from lavis.common.dist import all_gather_object, is_main_process
from lavis.common.errors import ConfigError
from lavis.runners.callbacks import Callback
from lavis.runners.eval_coverage import account_for_every_item, merge_ranks

if TYPE_CHECKING:
    from lavis.runners.base_runner import RunnerBase

logger = logging.getLogger(__name__)


class Validation(Callback):
    name = "validation"

    def on_epoch_end(self, runner: RunnerBase) -> None:
        if runner.run.valid_splits and runner.validation_due():
            results = self.validate_and_keep_best(runner, runner.validation_label())
            runner.callbacks.on_validation_end(runner, results)

    def eval_sets(self, runner: RunnerBase, splits: list[str]) -> list[tuple[str, Dataset]]:
        return [(f"{name}_{split}", by_split[split]) for name, by_split in runner.data.datasets.items()
                for split in splits if split in by_split]

    @torch.no_grad()
    def evaluate(self, runner: RunnerBase, splits: list[str], label: int | str) -> dict[str, dict[str, float]]:
        results: dict[str, dict[str, float]] = {}
        model = runner.model
        was_training = model.training
        model.eval()
        for name, dataset in self.eval_sets(runner, splits):
            loader, _ = runner.data.loader(dataset, train=False)
            records: list[dict[str, Any]] = []
            unreadable: list[Any] = []
            bar = runner.progress(len(loader), 0, f"eval {name}")
            for batch in loader:
                bar.update(1)
                inputs, meta = pop_bookkeeping(batch)
                unreadable.extend(meta.get("_skipped_samples") or [])
                if batch_size_of(inputs, meta) == 0:
                    continue
                inputs = move_to_device(inputs, runner.device)
                with model.autocast(runner.amp_dtype):
                    out = runner.task.valid_step(model, inputs)
                for record, index in zip(out, meta["_index"]):
                    record.setdefault("_index", int(index))
                records.extend(out)
            bar.close()
            merged, skipped = merge_ranks(all_gather_object((records, unreadable)))
            expected = len(dataset) if not isinstance(dataset, IterableDataset) else None
            ordered = account_for_every_item(runner.task, name, merged, skipped, expected,
                                             runner.run.unreadable_eval_images)
            metrics = runner.task.after_evaluation(ordered, name, label, runner.output_dir) if is_main_process() else None
            metrics = all_gather_object(metrics)[0]
            results[name] = metrics
            runner.writer.write("eval", runner.global_step, split=name, epoch=label, **metrics)
            logger.info("eval %s (epoch %s): %s", name, label, metrics)
        model.train(was_training)
        return results

    def validate_and_keep_best(self, runner: RunnerBase, label: int | str) -> dict[str, dict[str, float]]:
        run = runner.run
        results = self.evaluate(runner, run.valid_splits, label)
        if not results:
            return results
        values = [m[run.best_metric] for m in results.values() if run.best_metric in m]
        if not values:
            raise ConfigError(
                f"run.best_metric '{run.best_metric}' is not among the validation metrics "
                f"{sorted(next(iter(results.values())))}"
            )
        value = sum(values) / len(values)
        best = runner.best
        if best is None or (value > best["value"] if runner.best_mode == "max" else value < best["value"]):
            runner.best = {"value": value, "epoch": runner.epoch, "step": runner.global_step}
            if runner.checkpointer.save_best(runner):
                logger.info("new best %s=%.5g at step %d", run.best_metric, value, runner.global_step)
            else:  # best/ was not replaced: keep the record that matches it
                runner.best = best
        return results

    def test(self, runner: RunnerBase) -> dict[str, dict[str, float]]:
        if not runner.run.test_splits:
            return {}
        best = runner.checkpointer.dir / "best"
        label = "last"
        if runner.run.test_checkpoint == "best" and (best / ckpt.WEIGHTS_NAME).exists():
            runner.model.load_trainable_state_dict(ckpt.load_weights(best), source=str(best))
            label = "best"
        return self.evaluate(runner, runner.run.test_splits, label)
