"""Error types that carry a precise location (file, line, config key) for the user."""


class LavisError(Exception):
    """Base class for every error this framework raises on purpose."""


class RegistryError(LavisError, KeyError):
    """Unknown or duplicate registry name, or a class of the wrong kind."""

    def __str__(self) -> str:  # KeyError would quote the message; show it plainly
        return str(self.args[0]) if self.args else ""


class ConfigError(LavisError, ValueError):
    """A config key is unknown, missing or of the wrong type."""


class DataError(LavisError, ValueError):
    """A data file is malformed; the message names the file, line/row and field."""


class CheckpointError(LavisError, RuntimeError):
    """A checkpoint is missing, corrupt, or does not match the model's trainable set."""


class WeightsNotFoundError(LavisError, FileNotFoundError):
    """Pretrained weights are not available locally; the message says what to fetch and where."""


class JavaNotFoundError(LavisError, FileNotFoundError):
    """A Java program is needed but no ``java`` is on PATH (pycocoevalcap's tokenizer, METEOR, SPICE)."""


class DownloadError(LavisError, OSError):
    """A data set or weight file could not be fetched or verified; the message says what to do."""


def error_text(err: BaseException) -> str:
    """The one-line message of one of our errors. A DataLoader worker re-raises an error in the
    main process with the worker's whole traceback as its message; its last line is ours."""
    text = str(err)
    if "Original Traceback" not in text:
        return text
    last = text.rstrip().splitlines()[-1]
    prefix = f"{type(err).__module__}.{type(err).__qualname__}: "
    return last[len(prefix):] if last.startswith(prefix) else last
