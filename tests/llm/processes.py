"""Start real server processes for integration tests: vLLM's OpenAI server and `omost-llm serve`."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[2]
VLLM_PYTHON = ROOT / ".venv-vllm" / "bin" / "python"
# What vLLM's structured outputs use: xgrammar, no free whitespace in JSON.
STRUCTURED_OUTPUTS = '{"backend":"xgrammar","disable_any_whitespace":true}'


def wait_until(url: str, process: subprocess.Popen[bytes], log: Path, timeout_s: float) -> None:
    """Poll ``url`` until it answers 200; fail with the log's tail if the process dies first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited:\n{log.read_text()[-4000:]}")
        try:
            if httpx.get(url, timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(1)
    raise RuntimeError(f"{url} not ready after {timeout_s:g} s:\n{log.read_text()[-4000:]}")


@contextmanager
def running(
    command: list[str], env: Mapping[str, str], ready_url: str, log: Path, timeout_s: float
) -> Iterator[None]:
    """Run ``command`` until the block ends; wait for ``ready_url`` first."""
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, env={**os.environ, **env}, stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_until(ready_url, process, log, timeout_s)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


#: vLLM's n-gram speculative decoding, as docs/deployment.md documents it.
NGRAM_SPECULATION = (
    '{"method":"ngram","num_speculative_tokens":4,"prompt_lookup_max":4,"prompt_lookup_min":2}'
)


def vllm_command(
    model_dir: Path, served_name: str, port: int, extra: tuple[str, ...] = ()
) -> list[str]:
    """vLLM's OpenAI server for ``model_dir`` on CPU, structured outputs by xgrammar.

    ``extra``: more arguments (``--speculative-config ...``).
    """
    return [
        str(VLLM_PYTHON),
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_dir),
        "--served-model-name",
        served_name,
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--seed",
        "0",
        "--structured-outputs-config",
        STRUCTURED_OUTPUTS,
        *extra,
    ]


def omost_llm_command(port: int) -> list[str]:
    """``omost-llm serve`` as installed next to this interpreter."""
    script = Path(sys.executable).parent / "omost-llm"
    return [str(script), "serve", "--host", "127.0.0.1", "--port", str(port)]
