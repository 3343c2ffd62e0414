"""What kind of failure an exception from a render is, which decides what happens to the job.

A CUDA error that poisons the context (an illegal memory access, a device-side assert) leaves every
later kernel of the process failing: the job is not at fault, so it goes back to the queue with
its attempt refunded and the worker exits for its supervisor to restart it. Running out of memory
is a property of the job's parameters on this worker's GPU: retrying the same job cannot succeed,
so it fails at once. Validation errors are permanent too; anything else may be transient.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import ValidationError


class FailureKind(StrEnum):
    """How the worker treats a failed render."""

    #: The device is unusable: release the job (attempt refunded) and exit the worker.
    POISONED_DEVICE = "poisoned_device"
    #: Out of memory for these parameters: fail the job, no retry.
    OUT_OF_MEMORY = "out_of_memory"
    #: The request itself is invalid: fail the job, no retry.
    INVALID_JOB = "invalid_job"
    #: Anything else: retry up to the job's attempts.
    TRANSIENT = "transient"


#: Message fragments of CUDA errors after which the context is unusable ("sticky" errors).
POISONED_DEVICE_MARKERS = (
    "illegal memory access",
    "cudaerrorillegaladdress",
    "device-side assert",
    "cudaerrorassert",
    "unspecified launch failure",
    "cudaerrorlaunchfailure",
    "misaligned address",
    "illegal instruction",
    "uncorrectable ecc error",
    "cuda error: unknown error",
    "cublas_status_execution_failed",
)
#: Message fragments of running out of device memory.
OUT_OF_MEMORY_MARKERS = ("out of memory", "cudaerrormemoryallocation")
#: Exception class names (anywhere in the class hierarchy) of running out of device memory:
#: ``torch.OutOfMemoryError`` (``torch.cuda.OutOfMemoryError``), matched by name so the worker
#: does not need torch to classify.
OUT_OF_MEMORY_CLASSES = frozenset({"OutOfMemoryError"})


def classify(error: BaseException) -> FailureKind:
    """Return how a render that raised ``error`` is to be treated.

    Args:
        error: The exception the pipeline raised (chained causes are read as well).

    Returns:
        The failure kind; ``TRANSIENT`` when nothing marks it otherwise.
    """
    chain = _chain(error)
    if any(isinstance(e, (ValueError, TypeError, ValidationError)) for e in chain[:1]):
        return FailureKind.INVALID_JOB
    text = " ".join(str(e).lower() for e in chain)
    if any(marker in text for marker in POISONED_DEVICE_MARKERS):
        return FailureKind.POISONED_DEVICE
    names = {cls.__name__ for e in chain for cls in type(e).__mro__}
    if isinstance(error, MemoryError) or names & OUT_OF_MEMORY_CLASSES:
        return FailureKind.OUT_OF_MEMORY
    if any(marker in text for marker in OUT_OF_MEMORY_MARKERS):
        return FailureKind.OUT_OF_MEMORY
    return FailureKind.TRANSIENT


def _chain(error: BaseException) -> list[BaseException]:
    """The error and its causes (``raise ... from`` and implicit context), at most 8 deep."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(chain) < 8 and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain
