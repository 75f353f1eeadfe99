"""Engine errors. Each carries the HTTP-ish status the gateway maps it to, so adapters
translate without a lookup table per protocol."""

import re
from pathlib import Path

_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/(?:[^\s'\"/:,;()]+/)*[^\s'\"/:,;()]*")


def public_reason(reason: str, folder: Path | None) -> str:
    """A model's failure as clients see it: files named relative to the model's folder, and
    no other server path (the log keeps the full reason). A source that is no folder here (a hub
    id, a relative name) is the operator's reference, not a server path: it stays."""
    if folder and not folder.is_absolute() and not folder.exists():
        folder = None
    for path in {str(folder), str(folder.resolve())} if folder else ():
        # quoted, the path is a value ("source '/x' is neither a folder ..."): a placeholder keeps the sentence whole
        reason = reason.replace(repr(path), "'<path>'").replace(path + "/", "").replace(path, "its folder")
    return _ABSOLUTE_PATH.sub("<path>", reason)


class EngineError(Exception):
    status = 500
    kind = "internal_error"

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def about_model(name: str, error: Exception | str) -> str:
    """`model 'x': <reason>`, without doubling the prefix when the reason already has it."""
    reason = getattr(error, "message", None) or str(error)
    prefix = f"model {name!r}: "
    return reason if reason.startswith(prefix) else prefix + reason


class InvalidInput(EngineError):
    status = 422
    kind = "invalid_request"


class InputTooLong(InvalidInput):
    kind = "input_too_long"


class TooManyInputs(EngineError):
    status = 413
    kind = "too_many_inputs"


class InputTooLarge(EngineError):
    status = 413
    kind = "input_too_large"


class ModelNotFound(EngineError):
    status = 404
    kind = "model_not_found"


class UnsupportedOutput(InvalidInput):
    kind = "unsupported_output"


class Overloaded(EngineError):
    """The queue is full. `retry_after` is a hint in seconds."""

    status = 429
    kind = "overloaded"

    def __init__(self, message: str, retry_after: float = 1.0):
        super().__init__(message)
        self.retry_after = retry_after


class NotReady(EngineError):
    status = 503
    kind = "not_ready"


class DeadlineExceeded(EngineError):
    status = 504
    kind = "deadline_exceeded"


class ModelLoadError(EngineError):
    status = 503
    kind = "model_load_failed"


class NoRoom(EngineError):
    """The model cannot fit in the memory budget beside the models that never leave it."""

    status = 503
    kind = "model_cannot_fit"


class LoadTimeout(EngineError):
    """An operator's load did not finish in time (it goes on in the background)."""

    status = 504
    kind = "load_timeout"


class Conflict(EngineError):
    """The operation contradicts the model's state (unloading a pinned or busy model)."""

    status = 409
    kind = "conflict"
