"""Prompt lookup, jump-forward and vLLM's n-gram speculation, each against decoding without it.

In process (``transformers`` backend loop, one torch thread), for SmolLM2 (the CPU default, in
``json`` mode as ``make run`` serves it) and the ``tiny`` model (``code`` mode), greedy, under
the compact canvas budget: a first canvas ("the fierce battle of warriors and the dragon") and an
edit turn of that very canvas ("make the dragon blue", sent back as the model's own answer), each
decoded four ways (plain, prompt lookup, jump-forward, both) back to back in one run. It prints
seconds, forward passes, accepted draft tokens per verification, forced tokens per jump and per
forward pass, and whether the canvas is identical to the plain one.

With ``.venv-vllm`` it then starts the real vLLM CPU server with the ``tiny`` model twice, without
and with n-gram speculative decoding (``--speculative-config`` as docs/deployment.md documents
it), and times the same edit turn under the grammar the ``vllm`` backend sends: tokens per
second, drafts and accepted tokens from vLLM's metrics.

Run: ``python -m benchmarks.bench_speculative [--models smollm2,tiny] [--repeats N] [--no-vllm]``.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import xgrammar as xgr
from omost_llm.backends.model_loading import load_model
from omost_llm.backends.openai_backend import VLLMBackend
from omost_llm.backends.token_loop import DecodeStats, LoopParams, run_loop
from omost_llm.backends.transformers_backend import _stop_ids, compile_constraint
from omost_llm.canvas_budget import model_budget
from omost_llm.canvas_output import read_output
from omost_llm.config import OutputMode, Settings
from omost_llm.metrics import Metrics
from omost_llm.protocol import ChatMessage, GenerationEvent, TextDelta
from omost_llm.serving import Composer
from omost_llm.tiny import tiny_model_dir
from omost_schema import Canvas

from tests.llm.conftest import free_port
from tests.llm.fakes import FakeBackend
from tests.llm.processes import NGRAM_SPECULATION, VLLM_PYTHON, running, vllm_command

PROMPT = "the fierce battle of warriors and the dragon"
EDIT = "make the dragon blue"
WAYS = {"plain": (0, False), "lookup": (8, False), "jump": (0, True), "both": (8, True)}


@dataclass
class Decoded:
    text: str
    seconds: float
    stats: DecodeStats


class InProcess:
    """One model, its compiled grammar and its tokenizer's prompts."""

    def __init__(self, model: str, output: OutputMode) -> None:
        self.settings = Settings(model=model, output=output, threads=1)
        self.model, self.tokenizer = load_model(self.settings)
        self.stop = _stop_ids(self.model, self.tokenizer)
        vocab = int(self.model.config.vocab_size)
        info = xgr.TokenizerInfo.from_huggingface(
            self.tokenizer, vocab_size=vocab, stop_token_ids=sorted(self.stop)
        )
        self.compiled = compile_constraint(info, output, model_budget(self.settings))
        self.composer = Composer(FakeBackend(), self.settings, Metrics())

    def prompt_ids(self, messages: list[ChatMessage]) -> list[int]:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        ids: list[int] = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        return ids

    def decode(self, prompt_ids: list[int], lookup: int, jump: bool) -> Decoded:
        matcher = xgr.GrammarMatcher(self.compiled)
        bitmask = xgr.allocate_token_bitmask(1, int(self.model.config.vocab_size))
        params = LoopParams(
            max_tokens=2048,
            temperature=0.0,
            top_p=1.0,
            seed=0,
            stop=[],
            lookup_tokens=lookup,
            lookup_ngram=self.settings.prompt_lookup_ngram,
            jump_forward=jump,
        )
        events: list[GenerationEvent] = []
        stats = DecodeStats()
        start = time.perf_counter()
        run_loop(
            self.model,
            self.tokenizer,
            prompt_ids,
            params,
            matcher,
            bitmask,
            self.stop,
            events.append,
            threading.Event(),
            stats,
        )
        seconds = time.perf_counter() - start
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        return Decoded(text, seconds, stats)

    def canvas(self, text: str) -> Canvas:
        return read_output(text, self.settings.output, strict=True).canvas


def _row(model: str, turn: str, way: str, run: Decoded, base: Decoded, same: bool) -> str:
    s = run.stats
    per_verification = f"{s.accepted / s.verifications:.2f}" if s.verifications else "-"
    per_jump = f"{s.forced / s.jumps:.2f}" if s.jumps else "-"
    decode, base_decode = run.seconds - s.prefill_s, base.seconds - base.stats.prefill_s
    return (
        f"| {model} | {turn} | {way} | {run.seconds:.2f} | {base.seconds / run.seconds:.2f}x"
        f" | {decode:.2f} | {base_decode / decode:.2f}x | {s.tokens} | {s.forward_passes}"
        f" | {s.tokens / s.forward_passes:.2f}"
        f" | {per_verification} | {per_jump} | {'yes' if same else 'no'} |"
    )


def bench_in_process(model: str, output: OutputMode, repeats: int) -> None:
    """First canvas and edit turn, four ways each, side by side."""
    engine = InProcess(model, output)
    first_prompt = engine.prompt_ids(engine.composer.conversation([("user", PROMPT)]).messages)
    plain_first = engine.decode(first_prompt, 0, False)
    previous = engine.canvas(plain_first.text)
    edit = engine.composer.canvas_conversation(EDIT, previous)
    edit_prompt = engine.prompt_ids(edit.messages)
    for turn, prompt in (("first canvas", first_prompt), ("edit turn", edit_prompt)):
        runs: dict[str, list[Decoded]] = {way: [] for way in WAYS}
        for _ in range(repeats):
            for way, (lookup, jump) in WAYS.items():
                # A first canvas has no earlier answer: the service drafts only on edit turns.
                runs[way].append(engine.decode(prompt, lookup if turn == "edit turn" else 0, jump))
        median = {
            way: sorted(rs, key=lambda r: r.seconds)[len(rs) // 2] for way, rs in runs.items()
        }
        base = median["plain"]
        for way, run in median.items():
            if turn == "first canvas" and way in ("lookup", "both"):
                continue
            same = engine.canvas(run.text) == engine.canvas(base.text)
            print(_row(model, turn, way, run, base, same), flush=True)


def _spec_counts(url: str) -> tuple[float, float]:
    metrics = httpx.get(f"{url}/metrics").text
    values = {}
    for line in metrics.splitlines():
        for name in ("spec_decode_num_draft_tokens_total", "spec_decode_num_accepted_tokens_total"):
            if line.startswith(f"vllm:{name}"):
                values[name] = float(line.split()[-1])
    return (
        values.get("spec_decode_num_draft_tokens_total", 0.0),
        values.get("spec_decode_num_accepted_tokens_total", 0.0),
    )


def _ask(url: str, fields: dict[str, Any], messages: list[ChatMessage]) -> dict[str, Any]:
    body = {
        "model": "tiny",
        "messages": [{"role": m.role, "content": m.content} for m in messages],
        "max_tokens": 1500,
        "temperature": 0.0,
        "seed": 0,
        **fields,
    }
    answer: dict[str, Any] = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=900).json()
    return answer


def bench_vllm(repeats: int) -> None:
    """The edit turn on the real vLLM CPU server, without and with n-gram speculation."""
    if not VLLM_PYTHON.is_file():
        print(f"vLLM: {VLLM_PYTHON} missing, skipped")
        return
    settings = Settings(model="tiny", backend="vllm", output=OutputMode.CODE)
    composer = Composer(FakeBackend(), settings, Metrics())
    first = composer.conversation([("user", PROMPT)])
    fields = VLLMBackend(settings).constraint_fields(model_budget(settings))
    model_dir = tiny_model_dir(settings.cache_dir, settings.seed)
    env = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
    results: dict[str, tuple[float, float, float, str]] = {}
    for name, extra in (("plain", ()), ("ngram", ("--speculative-config", NGRAM_SPECULATION))):
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log = Path(tempfile.mkdtemp()) / "vllm.log"
        with running(vllm_command(model_dir, "tiny", port, extra), env, f"{url}/health", log, 900):
            text = _ask(url, fields, first.messages)["choices"][0]["message"][
                "content"
            ]  # also compiles
            edit = composer.canvas_conversation(EDIT, Canvas.from_code(text, strict=True))
            _ask(url, fields, edit.messages)  # warm: the prefix cache holds the prompt from here on
            before = _spec_counts(url)
            seconds, tokens = [], 0
            for _ in range(repeats):
                start = time.perf_counter()
                answer = _ask(url, fields, edit.messages)
                seconds.append(time.perf_counter() - start)
                tokens = answer["usage"]["completion_tokens"]
                content = answer["choices"][0]["message"]["content"]
            after = _spec_counts(url)
            results[name] = (
                statistics.median(seconds),
                tokens,
                (after[1] - before[1]) / max(after[0] - before[0], 1),
                content,
            )
    plain = results["plain"]
    for name, (secs, tokens, accept, content) in results.items():
        same = Canvas.from_code(content, strict=True) == Canvas.from_code(plain[3], strict=True)
        print(
            f"| vLLM CPU tiny | edit turn | {name} | {secs:.2f} | {plain[0] / secs:.2f}x | - | -"
            f" | {tokens} | - | {tokens / secs:.1f} tok/s | accepted/drafted {accept:.2f} | -"
            f" | {'yes' if same else 'no'} |",
            flush=True,
        )


def main() -> None:
    """Run the in-process comparisons, then the vLLM one."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-vllm", action="store_true")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(
        "| model | turn | decoding | seconds | speed-up | after prefill | speed-up | tokens"
        " | forward passes | tokens/pass | accepted per verification | forced per jump"
        " | same canvas |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for model in args.models.split(","):
        output = OutputMode.JSON if model == "smollm2" else OutputMode.CODE
        bench_in_process(model, output, args.repeats)
    if not args.no_vllm:
        bench_vllm(max(args.repeats, 3))


if __name__ == "__main__":
    main()
