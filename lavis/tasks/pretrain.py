"""Stage 1 (image-text alignment) and stage 2 (instruction tuning): training is ``model(samples)``.

Both validate by loss unless a VQA-style task is used for validation; they differ in name only
so that run configs read as what they do.
"""

from __future__ import annotations

from lavis.tasks.base_task import BaseTask, register_task


@register_task("image_text_pretrain")
class ImageTextPretrainTask(BaseTask):
    """Stage 1: ITC + ITM + ITG on image-caption pairs (Quilt-1M)."""


@register_task("instruction_tuning")
class InstructionTuningTask(BaseTask):
    """Stage 2: language-model loss on the answer tokens of (image, instruction, answer)."""

    group_by_length = True  # instructions vary from 1 to 150 words: grouping removes most padding
