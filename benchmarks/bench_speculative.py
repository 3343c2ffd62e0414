"""Prompt lookup, jump-forward and vLLM's n-gram speculation, each against decoding without it.

In process (``transformers`` backend loop, one torch thread), for SmolLM2 (the CPU default, in
``json`` mode as ``make run`` serves it) and the ``tiny`` model (``code`` mode), greedy, under
the compact canvas budget, each generation starting from the kept cache as the service's would:
a first canvas ("the fierce battle of warriors and the dragon", after the warm-up's system
prompt) and two edit turns of that very canvas ("make the dragon blue", after the first canvas's
generation): as ``POST /v1/canvases`` sends it (the canvas after its global description) and as
a chat history (the request, the answer as written, the edit). Each is decoded plain, with prompt
lookup, with jump-forward and with both, back to back in one run, and cold (no kept cache: the
whole prompt read). Speed-ups are against "plain" from the same kept cache. It prints seconds,
the prompt read's seconds and the tokens reused from the kept cache, forward passes, accepted
draft tokens per verification, forced tokens kept of those drafted and per forward pass, and
whether the canvas is identical to the plain one.

With ``.venv-vllm`` it then starts two real vLLM CPU servers with the ``tiny`` model, without
and with n-gram speculative decoding (``--speculative-config`` as docs/deployment.md documents
it), and times the same edit turn under the grammar the ``vllm`` backend sends, the requests
alternating between the two: the median and range of seconds, tokens per second, drafts and
accepted tokens from vLLM's metrics.

Run: ``python -m benchmarks.bench_speculative [--models smollm2,tiny] [--repeats N] [--no-vllm]
[--vllm-repeats N]``.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import socket
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
from omost_llm.backends.prefix_cache import PrefixCache
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

    def prompt_text(self, messages: list[ChatMessage]) -> str:
        chat = [{"role": m.role, "content": m.content} for m in messages]
        text = self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        return str(text)

    def prompt_ids(self, messages: list[ChatMessage]) -> list[int]:
        """The prompt's ids as the backend makes them."""
        ids: list[int] = self.tokenizer(self.prompt_text(messages), add_special_tokens=False)[
            "input_ids"
        ]
        return ids

    def decode(
        self,
        prompt_ids: list[int],
        lookup: int,
        jump: bool,
        kept: PrefixCache | None = None,
        max_tokens: int = 2048,
    ) -> Decoded:
        """Decode greedily; ``kept`` is the kept cache the generation starts from (and fills)."""
        matcher = xgr.GrammarMatcher(self.compiled)
        bitmask = xgr.allocate_token_bitmask(1, int(self.model.config.vocab_size))
        params = LoopParams(
            max_tokens=max_tokens,
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
            kept,
        )
        seconds = time.perf_counter() - start
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        return Decoded(text, seconds, stats)

    def warm(self) -> PrefixCache:
        """The kept cache after the service's warm-up (the default system prompt, 1 token)."""
        kept = PrefixCache()
        warm_up = self.composer.conversation([("user", "a cat")])
        self.decode(self.prompt_ids(warm_up.messages), 0, False, kept, max_tokens=1)
        return kept

    def canvas(self, text: str) -> Canvas:
        return read_output(text, self.settings.output, strict=True).canvas


def _row(model: str, turn: str, way: str, run: Decoded, base: Decoded, same: bool) -> str:
    s = run.stats
    per_verification = f"{s.accepted / s.verifications:.2f}" if s.verifications else "-"
    forced_per_pass = f"{s.forced / s.forward_passes:.2f}" if s.jumps else "-"
    forced_kept = f"{s.forced}/{s.forced_drafted}" if s.jumps else "-"
    return (
        f"| {model} | {turn} | {way} | {run.seconds:.2f} | {base.seconds / run.seconds:.2f}x"
        f" | {s.prefill_s:.2f} | {s.reused} | {s.tokens} | {s.forward_passes}"
        f" | {s.tokens / s.forward_passes:.2f} | {per_verification} | {forced_kept}"
        f" | {forced_per_pass} | {'yes' if same else 'no'} |"
    )


def _side_by_side(
    engine: InProcess,
    model: str,
    turn: str,
    prompt: list[int],
    kept: PrefixCache,
    ways: dict[str, tuple[int, bool]],
    repeats: int,
) -> None:
    """Decode ``prompt`` each way from a copy of ``kept``, and cold; print one row each."""
    runs: dict[str, list[Decoded]] = {way: [] for way in ("cold", *ways)}
    for _ in range(repeats):
        # Cold: no kept cache, the whole prompt is read (the benchmark's earlier baseline).
        runs["cold"].append(engine.decode(prompt, 0, False))
        for way, (lookup, jump) in ways.items():
            runs[way].append(engine.decode(prompt, lookup, jump, copy.deepcopy(kept)))
    median = {way: sorted(rs, key=lambda r: r.seconds)[len(rs) // 2] for way, rs in runs.items()}
    base = median["plain"]
    for way, run in median.items():
        same = engine.canvas(run.text) == engine.canvas(base.text)
        print(_row(model, turn, way, run, base, same), flush=True)


def bench_in_process(model: str, output: OutputMode, repeats: int) -> None:
    """First canvas and two kinds of edit turn, each way, side by side from the same cache."""
    engine = InProcess(model, output)
    warm = engine.warm()
    first = engine.composer.conversation([("user", PROMPT)])
    first_prompt = engine.prompt_ids(first.messages)
    # A first canvas has no earlier answer: the service drafts only on edit turns.
    firsts = {"plain": (0, False), "jump": (0, True)}
    _side_by_side(engine, model, "first canvas", first_prompt, warm, firsts, repeats)
    # The previous turn, as the service ran it: its cache is what the edit turn starts from.
    after_first = copy.deepcopy(warm)
    answer = engine.decode(first_prompt, 0, False, after_first).text
    previous = engine.canvas(answer)
    edits = {
        # POST /v1/canvases: the canvas comes back after its global description.
        "canvas edit": engine.composer.canvas_conversation(EDIT, previous),
        # /v1/chat/completions with the history: the request, the answer as written, the edit.
        "chat edit": engine.composer.conversation(
            [("user", PROMPT), ("assistant", answer), ("user", EDIT)]
        ),
    }
    for turn, conversation in edits.items():
        prompt = engine.prompt_ids(conversation.messages)
        _side_by_side(engine, model, turn, prompt, after_first, WAYS, repeats)


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


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def bench_vllm(repeats: int) -> None:
    """The edit turn on the real vLLM CPU server, without and with n-gram speculation.

    Both servers run at once and the requests alternate between them (the order swapped every
    round), so that the other work on a shared machine slows both alike; the medians of
    ``repeats`` requests each are compared.
    """
    if not VLLM_PYTHON.is_file():
        print(f"vLLM: {VLLM_PYTHON} missing, skipped")
        return
    settings = Settings(model="tiny", backend="vllm", output=OutputMode.CODE)
    composer = Composer(FakeBackend(), settings, Metrics())
    first = composer.conversation([("user", PROMPT)])
    fields = VLLMBackend(settings).constraint_fields(model_budget(settings))
    model_dir = tiny_model_dir(settings.cache_dir, settings.seed)
    env = {"HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "VLLM_NO_USAGE_STATS": "1"}
    servers = {"plain": (), "n-gram": ("--speculative-config", NGRAM_SPECULATION)}
    urls = {name: f"http://127.0.0.1:{_free_port()}" for name in servers}
    with contextlib.ExitStack() as stack:
        for name, extra in servers.items():
            port = int(urls[name].rsplit(":", 1)[1])
            log = Path(tempfile.mkdtemp()) / "vllm.log"
            command = vllm_command(model_dir, "tiny", port, extra)
            stack.enter_context(running(command, env, f"{urls[name]}/health", log, 900))
        edit: Any = None
        for url in urls.values():
            text = _ask(url, fields, first.messages)["choices"][0]["message"]["content"]
            if edit is None:  # the same edit turn for both (the plain server's canvas)
                edit = composer.canvas_conversation(EDIT, Canvas.from_code(text, strict=True))
            _ask(url, fields, edit.messages)  # warm: the prefix cache holds the prompt
        before = {name: _spec_counts(url) for name, url in urls.items()}
        seconds: dict[str, list[float]] = {name: [] for name in servers}
        answers: dict[str, dict[str, Any]] = {}
        for round_ in range(repeats):
            for name in list(servers)[:: 1 if round_ % 2 == 0 else -1]:
                start = time.perf_counter()
                answers[name] = _ask(urls[name], fields, edit.messages)
                seconds[name].append(time.perf_counter() - start)
        after = {name: _spec_counts(url) for name, url in urls.items()}
    plain = statistics.median(seconds["plain"])
    plain_canvas = Canvas.from_code(answers["plain"]["choices"][0]["message"]["content"])
    for name in servers:
        secs = statistics.median(seconds[name])
        low, high = min(seconds[name]), max(seconds[name])
        tokens = answers[name]["usage"]["completion_tokens"]
        content = answers[name]["choices"][0]["message"]["content"]
        drafted = after[name][0] - before[name][0]
        accept = (after[name][1] - before[name][1]) / drafted if drafted else 0.0
        same = Canvas.from_code(content, strict=True) == plain_canvas
        print(
            f"| vLLM CPU tiny | edit turn | {name} | {secs:.3f} ({low:.3f}-{high:.3f})"
            f" | {plain / secs:.2f}x | {tokens} | {tokens / secs:.1f} | {accept:.2f}"
            f" | {'yes' if same else 'no'} |",
            flush=True,
        )


def main() -> None:
    """Run the in-process comparisons, then the vLLM one."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="tiny,smollm2")
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--no-vllm", action="store_true")
    parser.add_argument("--vllm-repeats", type=int, default=15, help="requests per vLLM server")
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    print(
        "| model | turn | decoding | seconds | speed-up | prompt read | tokens reused | tokens"
        " | forward passes | tokens/pass | accepted per verification | forced kept/drafted"
        " | forced per pass | same canvas |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for model in args.models.split(","):
        output = OutputMode.JSON if model == "smollm2" else OutputMode.CODE
        bench_in_process(model, output, args.repeats)
    if not args.no_vllm:
        print(
            f"\n| server | turn | decoding | seconds, median of {args.vllm_repeats} (range)"
            " | speed-up | tokens | tokens/s | accepted / drafted | same canvas |"
        )
        print("|---|---|---|---:|---:|---:|---:|---:|---|")
        bench_vllm(args.vllm_repeats)


if __name__ == "__main__":
    main()
