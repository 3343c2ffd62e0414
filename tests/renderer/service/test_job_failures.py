from __future__ import annotations

import pytest
import torch
from omost_renderer.job_queue.worker_queue import Claim, StartedJob
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.worker.failures import FailureKind, classify
from omost_renderer.worker.job_watch import RunningJob, WatchVerdict, job_deadline_s, total_steps
from pydantic import BaseModel, ValidationError
from service_support import make_settings

# Messages as PyTorch raises them (torch.AcceleratorError / RuntimeError from c10::CUDAError).
POISONED = [
    "CUDA error: an illegal memory access was encountered\nCUDA kernel errors might be "
    "asynchronously reported at some other API call, so the stacktrace below might be incorrect.",
    "CUDA error: device-side assert triggered\nCompile with `TORCH_USE_CUDA_DSA` to enable "
    "device-side assertions.",
    "CUDA error: unspecified launch failure",
    "CUDA error: misaligned address",
    "CUDA error: an illegal instruction was encountered",
    "CUDA error: uncorrectable ECC error encountered",
    "cudaErrorIllegalAddress: an illegal memory access was encountered",
    "CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasGemmEx( handle, opa, opb, m, n, k, ...)`",
]


@pytest.mark.parametrize("message", POISONED)
def test_sticky_cuda_errors_poison_the_device(message: str) -> None:
    assert classify(RuntimeError(message)) is FailureKind.POISONED_DEVICE


def test_a_poisoned_device_is_found_behind_a_wrapping_error() -> None:
    outer = RuntimeError("render failed")
    outer.__cause__ = RuntimeError(POISONED[0])
    assert classify(outer) is FailureKind.POISONED_DEVICE


def test_out_of_memory_is_permanent_for_the_job() -> None:
    error = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    assert classify(error) is FailureKind.OUT_OF_MEMORY
    assert classify(RuntimeError("CUDA error: out of memory")) is FailureKind.OUT_OF_MEMORY
    assert classify(MemoryError()) is FailureKind.OUT_OF_MEMORY


def test_invalid_input_and_other_errors() -> None:
    class Strict(BaseModel):
        n: int

    with pytest.raises(ValidationError) as invalid:
        Strict.model_validate({"n": "x"})
    assert classify(invalid.value) is FailureKind.INVALID_JOB
    assert classify(ValueError("no regions")) is FailureKind.INVALID_JOB
    assert classify(RuntimeError("connection reset by peer")) is FailureKind.TRANSIENT
    assert classify(OSError("disk full")) is FailureKind.TRANSIENT


def test_deadline_grows_with_the_steps_of_both_passes(tmp_path: object) -> None:
    settings = make_settings(
        "redis://127.0.0.1:1/0", tmp_path, deadline_base_s=60, deadline_step_s=2
    )  # type: ignore[arg-type]
    assert total_steps(RenderParams(steps=25)) == 25
    assert total_steps(RenderParams(steps=25, hires_scale=1.5, hires_steps=20)) == 45
    assert job_deadline_s(RenderParams(steps=25), settings) == 60 + 2 * 25
    assert job_deadline_s(RenderParams(steps=25, hires_scale=1.5, hires_steps=20), settings) == 150


def test_watch_verdicts_follow_progress() -> None:
    running = RunningJob(StartedJob(Claim("1-0", "job"), 1, 0.0, "{}"), 100.0, deadline_s=50)
    assert running.verdict(140.0, stall_after_s=10) is WatchVerdict.ALIVE  # not rendering yet
    running.rendering = True
    running.stepped(135.0)
    assert running.verdict(140.0, stall_after_s=10) is WatchVerdict.ALIVE
    assert running.verdict(146.0, stall_after_s=10) is WatchVerdict.STALLED
    running.stepped(149.0)
    assert running.verdict(151.0, stall_after_s=10) is WatchVerdict.PAST_DEADLINE
    running.abandon(151.0)
    assert running.fenced.is_set()
    assert running.verdict(155.0, stall_after_s=10) is WatchVerdict.RELEASED
    assert running.verdict(162.0, stall_after_s=10) is WatchVerdict.HUNG
    running.rendering = False  # the render came back: nothing hangs
    assert running.verdict(170.0, stall_after_s=10) is WatchVerdict.RELEASED
