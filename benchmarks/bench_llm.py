"""LLM service benchmarks, each side by side with its baseline in one run.

* Service overhead: a chat request through ``omost-llm`` over HTTP (uvicorn, the openai wire
  format, validation, SSE) against consuming the same backend directly, with a fake backend that
  answers instantly, so all that is measured is the service: per request and per streamed token.
* Constrained against unconstrained decoding on the ``tiny`` model (tokens per second), in both
  output modes: the cost of xgrammar's token masks.
* Token-mask cost on a real answer: Omost's dragon answer forced token by token through the
  compiled ``code`` grammar and, as the baseline, the ``json`` schema of the same canvas (the
  Llama-3 vocabulary, compiled as the ``transformers`` backend compiles them): milliseconds per
  mask, mean and worst, and the compile time. Random tiny models write short strings; Omost
  models write descriptions of hundreds of characters, where a grammar's cost shows.
* Tokens per canvas in ``code`` against ``json`` mode, for the same canvases (random ones and
  Omost's dragon answer), counted with the Llama-3 tokenizer.

Run: ``python -m benchmarks.bench_llm [--requests N] [--seeds N] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import socket
import statistics
import threading
import time
from collections.abc import AsyncGenerator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from omost_llm.backends.transformers_backend import TransformersBackend
from omost_llm.config import OutputMode, Settings
from omost_llm.main import create_app
from omost_llm.protocol import (
    ChatMessage,
    GenerationEnd,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
    TextDelta,
)
from omost_llm.tiny import tiny_model_dir
from omost_schema import Canvas

from benchmarks.bench_schema import random_canvas

ROOT = Path(__file__).resolve().parents[1]
DRAGON = ROOT / "tests" / "schema" / "data" / "dragon_answer.txt"
USER = [{"role": "user", "content": "a dragon over a castle"}]


class InstantBackend:
    """Answers every request at once with a fixed canvas, in pieces of about one token."""

    constrained = True

    def __init__(self, answer: str, piece_chars: int = 4) -> None:
        self.pieces = [answer[i : i + piece_chars] for i in range(0, len(answer), piece_chars)]

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    async def ready(self) -> bool:
        return True

    async def context_length(self) -> int | None:
        return None

    async def count_prompt_tokens(self, messages: list[ChatMessage]) -> int | None:
        return None

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        for piece in self.pieces:
            yield TextDelta(piece)
        yield GenerationEnd("stop", prompt_tokens=10, completion_tokens=len(self.pieces))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@contextmanager
def _serving(app: Any) -> Iterator[str]:
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.01)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join()


async def _direct_once(backend: InstantBackend) -> int:
    request = GenerationRequest([ChatMessage("user", "x")], OutputMode.CODE, SamplingParams(4096))
    count = 0
    async for event in backend.generate(request):
        count += isinstance(event, TextDelta)
    return count


def bench_overhead(requests: int) -> dict[str, float]:
    """Median seconds per request: direct backend, service (whole answer), service (streamed)."""
    canvas = Canvas.from_code(DRAGON.read_text(encoding="utf-8"), strict=True)
    backend = InstantBackend(f"```python\n{canvas.to_code()}```")
    settings = Settings(model="bench", warmup=False, max_tokens_limit=100_000)
    direct = []
    for _ in range(requests):
        start = time.perf_counter()
        asyncio.run(_direct_once(backend))
        direct.append(time.perf_counter() - start)
    whole, streamed = [], []
    body = {"model": "bench", "messages": USER}
    with _serving(create_app(settings, backend)) as url, httpx.Client(base_url=url) as client:
        for _ in range(requests):
            start = time.perf_counter()
            answer = client.post("/v1/chat/completions", json=body, timeout=60)
            whole.append(time.perf_counter() - start)
            assert answer.status_code == 200, answer.text
            start = time.perf_counter()
            with client.stream(
                "POST", "/v1/chat/completions", json={**body, "stream": True}, timeout=60
            ) as stream:
                chunks = sum(1 for line in stream.iter_lines() if line.startswith("data:"))
            streamed.append(time.perf_counter() - start)
    tokens = len(backend.pieces)
    result = {
        "tokens": float(tokens),
        "stream_chunks": float(chunks),
        "direct_s": statistics.median(direct),
        "service_s": statistics.median(whole),
        "service_stream_s": statistics.median(streamed),
    }
    result["overhead_per_request_ms"] = 1000 * (result["service_s"] - result["direct_s"])
    result["overhead_per_streamed_token_us"] = (
        1e6 * (result["service_stream_s"] - result["direct_s"]) / tokens
    )
    return result


async def _tokens_per_s(backend: TransformersBackend, seeds: int, max_tokens: int) -> float:
    tokens, seconds = 0, 0.0
    for seed in range(seeds):
        request = GenerationRequest(
            [ChatMessage("user", "a dragon over a castle")],
            backend.settings.output,
            SamplingParams(max_tokens, seed=seed),
        )
        start = time.perf_counter()
        async for event in backend.generate(request):
            if isinstance(event, GenerationEnd):
                tokens += event.completion_tokens
        seconds += time.perf_counter() - start
    return tokens / seconds


def bench_constrained(seeds: int, max_tokens: int) -> dict[str, float]:
    """Tokens per second of the tiny model with and without the mask, per output mode."""

    async def run() -> dict[str, float]:
        result = {}
        for output in (OutputMode.CODE, OutputMode.JSON):
            for constrained in (True, False):
                settings = Settings(model="tiny", output=output, constrained=constrained, threads=1)
                backend = TransformersBackend(settings)
                await backend.start()
                name = f"{output.value}_{'constrained' if constrained else 'free'}_tok_s"
                result[name] = await _tokens_per_s(backend, seeds, max_tokens)
                await backend.close()
            free = result[f"{output.value}_free_tok_s"]
            result[f"{output.value}_ratio"] = result[f"{output.value}_constrained_tok_s"] / free
        return result

    return asyncio.run(run())


def bench_masks() -> dict[str, float]:
    """Per-token mask time over the dragon answer: code grammar against the JSON schema."""
    import xgrammar as xgr
    from omost_llm.answer import ANSWER_PREFIX, ANSWER_SENTENCE, wrap_code
    from omost_llm.backends.transformers_backend import compile_constraint
    from transformers import AutoTokenizer

    settings = Settings(model="tiny")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir(settings.cache_dir)))
    info = xgr.TokenizerInfo.from_huggingface(tokenizer, vocab_size=len(tokenizer))
    canvas = Canvas.from_code(DRAGON.read_text(encoding="utf-8"), strict=True)
    # The grammar covers the fenced block (the service writes the sentence before it).
    block = wrap_code(canvas.to_code()).removeprefix(ANSWER_SENTENCE)
    assert block.startswith(ANSWER_PREFIX.removeprefix(ANSWER_SENTENCE))
    texts = {OutputMode.CODE: block, OutputMode.JSON: canvas.model_dump_json()}
    result: dict[str, float] = {}
    for output, text in texts.items():
        start = time.perf_counter()
        compiled = compile_constraint(info, output)
        result[f"{output.value}_compile_s"] = time.perf_counter() - start
        matcher = xgr.GrammarMatcher(compiled)
        bitmask = xgr.allocate_token_bitmask(1, info.vocab_size)
        times = []
        for token in tokenizer(text, add_special_tokens=False)["input_ids"]:
            start = time.perf_counter()
            matcher.fill_next_token_bitmask(bitmask)
            times.append(time.perf_counter() - start)
            if not matcher.accept_token(token):
                raise RuntimeError(f"the {output.value} constraint refused the dragon answer")
        result[f"{output.value}_tokens"] = float(len(times))
        result[f"{output.value}_mask_mean_ms"] = 1000 * statistics.mean(times)
        result[f"{output.value}_mask_max_ms"] = 1000 * max(times)
    result["code_over_json_mask"] = result["code_mask_mean_ms"] / result["json_mask_mean_ms"]
    return result


def bench_tokens_per_canvas(canvases: int) -> dict[str, float]:
    """Llama-3 tokens of Omost code against compact canvas JSON, for the same canvases."""
    from transformers import AutoTokenizer

    settings = Settings(model="tiny")
    tokenizer = AutoTokenizer.from_pretrained(str(tiny_model_dir(settings.cache_dir)))
    rng = random.Random(0)
    items = [random_canvas(rng, rng.randint(1, 6)) for _ in range(canvases)]
    items.append(Canvas.from_code(DRAGON.read_text(encoding="utf-8"), strict=True))
    code = [len(tokenizer(c.to_code())["input_ids"]) for c in items]
    # Omost's code repeats each description in a comment line; without them, the calls alone.
    bare = [len(tokenizer(_without_comments(c.to_code()))["input_ids"]) for c in items]
    data = [len(tokenizer(c.model_dump_json())["input_ids"]) for c in items]
    return {
        "canvases": float(len(items)),
        "code_tokens_mean": statistics.mean(code),
        "code_without_comments_tokens_mean": statistics.mean(bare),
        "json_tokens_mean": statistics.mean(data),
        "dragon_code_tokens": float(code[-1]),
        "dragon_json_tokens": float(data[-1]),
        "code_over_json": sum(code) / sum(data),
        "code_without_comments_over_json": sum(bare) / sum(data),
    }


def _without_comments(code: str) -> str:
    return "\n".join(line for line in code.splitlines() if not line.lstrip().startswith("#"))


def main() -> None:
    """Run the three benchmarks and print their ratios."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200, help="requests for the overhead")
    parser.add_argument("--seeds", type=int, default=4, help="generations per decoding setting")
    parser.add_argument("--max-tokens", type=int, default=300, help="tokens per generation")
    parser.add_argument("--canvases", type=int, default=50, help="random canvases to tokenize")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    results = {
        "tokens_per_canvas": bench_tokens_per_canvas(args.canvases),
        "overhead": bench_overhead(args.requests),
        "constrained": bench_constrained(args.seeds, args.max_tokens),
        "masks": bench_masks(),
    }
    t, o, c = results["tokens_per_canvas"], results["overhead"], results["constrained"]
    m = results["masks"]
    print(
        f"tokens per canvas ({t['canvases']:.0f} canvases, Llama-3): code "
        f"{t['code_tokens_mean']:.0f}"
        f", json {t['json_tokens_mean']:.0f} -> code/json {t['code_over_json']:.2f}; without "
        f"comment lines {t['code_without_comments_tokens_mean']:.0f} -> "
        f"{t['code_without_comments_over_json']:.2f} (dragon: {t['dragon_code_tokens']:.0f} "
        f"vs {t['dragon_json_tokens']:.0f})"
    )
    print(
        f"service overhead ({o['tokens']:.0f}-token answer, median of {args.requests}): direct "
        f"{1000 * o['direct_s']:.2f} ms, service {1000 * o['service_s']:.2f} ms, streamed "
        f"{1000 * o['service_stream_s']:.2f} ms -> {o['overhead_per_request_ms']:.2f} ms per "
        f"request, {o['overhead_per_streamed_token_us']:.1f} us per streamed token"
    )
    for mode in ("code", "json"):
        print(
            f"tiny model, {mode} mode, tokens/s: constrained {c[f'{mode}_constrained_tok_s']:.1f}"
            f", unconstrained {c[f'{mode}_free_tok_s']:.1f} -> ratio {c[f'{mode}_ratio']:.2f}"
        )
    for mode in ("code", "json"):
        print(
            f"dragon answer, {mode} constraint ({m[f'{mode}_tokens']:.0f} tokens): mask mean "
            f"{m[f'{mode}_mask_mean_ms']:.3f} ms, worst {m[f'{mode}_mask_max_ms']:.2f} ms, "
            f"compile {m[f'{mode}_compile_s']:.2f} s"
        )
    print(f"code/json mask time per token: {m['code_over_json_mask']:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
