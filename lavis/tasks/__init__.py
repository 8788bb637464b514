"""Tasks: what a training step and an evaluation mean for each kind of run."""

from lavis.tasks import captioning, pretrain, vqa  # noqa: F401
from lavis.tasks.base_task import TASKS, BaseTask, register_task  # noqa: F401
