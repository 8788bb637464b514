"""Training loops: epoch-based and iteration-based, under torch.distributed."""

from lavis.runners import runner_epoch, runner_iter  # noqa: F401, E402
from lavis.runners.base_runner import RUNNERS, RunnerBase, register_runner  # noqa: F401
from lavis.runners.run_config import RunConfig  # noqa: F401
