"""Training loops (epoch- and iteration-based, under torch.distributed), their parts and callbacks."""

from lavis.runners import early_stopping, runner_epoch, runner_iter  # noqa: F401, E402
from lavis.runners.base_runner import RUNNERS, RunnerBase, register_runner  # noqa: F401
from lavis.runners.callbacks import CALLBACKS, Callback, register_callback  # noqa: F401
from lavis.runners.run_config import RunConfig  # noqa: F401
