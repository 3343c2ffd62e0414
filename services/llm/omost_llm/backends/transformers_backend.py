"""In-process backend: a transformers model on CPU or GPU, constrained by xgrammar."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from omost_schema import FULL_BUDGET, CanvasBudget

from omost_llm.backends.model_loading import load_model
from omost_llm.backends.prefix_cache import PrefixCache
from omost_llm.backends.token_loop import LoopParams, run_loop
from omost_llm.canvas_budget import model_budget
from omost_llm.config import OutputMode, Settings
from omost_llm.constraints import decoding_grammar, decoding_json_grammar
from omost_llm.errors import BackendUnavailableError
from omost_llm.prompt import system_prompt
from omost_llm.protocol import (
    ChatMessage,
    GenerationEnd,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
)


class TransformersBackend:
    """Generates in this process, one request at a time on a worker thread.

    The model loads and the model budget's grammar compiles in ``start()``; a request with a
    smaller budget compiles its own once (a fraction of a second; a few are kept). Each
    generation gets a fresh ``GrammarMatcher`` over the compiled grammar, so every answer is a
    canvas by construction.
    """

    def __init__(self, settings: Settings) -> None:
        """Configure (nothing is loaded until ``start``)."""
        self.settings = settings
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="omost-llm-gen")
        self._model: Any = None
        self._tokenizer: Any = None
        self._compiled: dict[CanvasBudget, Any] = {}
        self._info: Any = None
        self._vocab_size = 0
        self._context: int | None = None
        self._stop_ids: set[int] = set()
        # The last generation's KV cache: the next one reuses the shared system prompt (and an
        # edit turn the conversation before it). Used on the one generation thread only.
        self._prefix = PrefixCache()

    @property
    def constrained(self) -> bool:
        """Whether answers are masked by the canvas grammar or schema."""
        return self.settings.constrained

    async def start(self) -> None:
        """Load the model and compile the grammar (in the worker thread); then warm up.

        The warm-up (``OMOST_LLM_WARMUP``) generates one token after the default system prompt,
        so the kept cache holds it and no request computes it again.
        """
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._load)
        if self.settings.warmup:
            await loop.run_in_executor(self._executor, self._warm_up)

    def _warm_up(self) -> None:
        budget = model_budget(self.settings)
        prompt = system_prompt(self.settings.output, budget)
        request = GenerationRequest(
            messages=[ChatMessage("system", prompt), ChatMessage("user", "a cat")],
            output=self.settings.output,
            sampling=SamplingParams(max_tokens=1, temperature=0.0),
            budget=budget,
        )
        errors: list[BaseException] = []

        def keep_errors(event: GenerationEvent | BaseException) -> None:
            if isinstance(event, BaseException):
                errors.append(event)

        self._run(request, keep_errors, threading.Event())
        if errors:
            raise errors[0]

    async def close(self) -> None:
        """Stop the worker thread and drop the model."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._model = None

    async def ready(self) -> bool:
        """Whether the model is loaded and the grammar compiled."""
        return self._model is not None and (bool(self._compiled) or not self.constrained)

    async def context_length(self) -> int | None:
        """The model config's ``max_position_embeddings`` (``None`` before loading)."""
        return self._context

    async def count_prompt_tokens(self, messages: list[ChatMessage]) -> int | None:
        """Tokens of the templated chat, as the generation will tokenize it."""
        if self._model is None:
            return None
        # Off the event loop, and off the generation thread (which may be busy for minutes).
        return len(await asyncio.to_thread(self._prompt_ids, messages))

    def _prompt_ids(self, messages: list[ChatMessage]) -> list[int]:
        prompt = self._tokenizer.apply_chat_template(
            [{"role": m.role, "content": m.content} for m in messages],
            tokenize=False,
            add_generation_prompt=True,
        )
        ids: list[int] = self._tokenizer(prompt, add_special_tokens=False)["input_ids"]
        return ids

    def _load(self) -> None:
        import torch
        import xgrammar as xgr

        if self.settings.threads:
            torch.set_num_threads(self.settings.threads)
        model, tokenizer = load_model(self.settings)
        self._vocab_size = int(model.config.vocab_size)
        context = getattr(model.config, "max_position_embeddings", None)
        self._context = int(context) if isinstance(context, int) and context > 0 else None
        self._stop_ids = _stop_ids(model, tokenizer)
        if self.constrained:
            info = xgr.TokenizerInfo.from_huggingface(
                tokenizer, vocab_size=self._vocab_size, stop_token_ids=sorted(self._stop_ids)
            )
            self._info = info
            self._grammar(model_budget(self.settings))
        self._tokenizer = tokenizer
        self._model = model

    async def generate(self, request: GenerationRequest) -> AsyncGenerator[GenerationEvent, None]:
        """Stream one answer; closing the iterator stops the decoding loop."""
        if self._model is None:
            raise BackendUnavailableError("the model is not loaded yet", retry_after=5)
        loop = asyncio.get_running_loop()
        events: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        cancel = threading.Event()

        def emit(event: GenerationEvent | BaseException) -> None:
            loop.call_soon_threadsafe(events.put_nowait, event)

        future = loop.run_in_executor(self._executor, self._run, request, emit, cancel)
        try:
            while True:
                event = await events.get()
                if isinstance(event, BaseException):
                    raise event
                yield event
                if isinstance(event, GenerationEnd):
                    break
        finally:
            cancel.set()
            # The loop notices within one token; do not wait for it while being cancelled.
            future.add_done_callback(lambda f: f.exception() if not f.cancelled() else None)

    def _run(
        self,
        request: GenerationRequest,
        emit: Any,
        cancel: threading.Event,
    ) -> None:
        import xgrammar as xgr

        try:
            prompt_ids = self._prompt_ids(request.messages)
            matcher = bitmask = None
            if self.constrained:
                matcher = xgr.GrammarMatcher(self._grammar(request.budget))
                bitmask = xgr.allocate_token_bitmask(1, self._vocab_size)
            params = LoopParams(
                max_tokens=request.sampling.max_tokens,
                temperature=request.sampling.temperature,
                top_p=request.sampling.top_p,
                seed=request.sampling.seed,
                stop=request.sampling.stop,
                # Prompt lookup pays off where the answer repeats the prompt: edit turns.
                lookup_tokens=self.settings.prompt_lookup_tokens if request.edit else 0,
                lookup_ngram=self.settings.prompt_lookup_ngram,
                jump_forward=self.settings.jump_forward and matcher is not None,
            )
            run_loop(
                self._model,
                self._tokenizer,
                prompt_ids,
                params,
                matcher,
                bitmask,
                self._stop_ids,
                emit,
                cancel,
                prefix=self._prefix,
            )
        except Exception as exc:  # reported to the request, whose task raises it
            emit(exc)

    def _grammar(self, budget: CanvasBudget) -> Any:
        # Runs on the generation thread (start-up or a request), so one compile at a time.
        compiled = self._compiled.get(budget)
        if compiled is None:
            if len(self._compiled) >= _MAX_COMPILED:
                # Keep the model's own budget; drop the requests' ones.
                keep = model_budget(self.settings)
                self._compiled = {b: c for b, c in self._compiled.items() if b == keep}
            compiled = compile_constraint(self._info, self.settings.output, budget)
            self._compiled[budget] = compiled
        return compiled


# Compiled grammars kept for distinct canvas budgets.
_MAX_COMPILED = 8


def compile_constraint(info: Any, output: OutputMode, budget: CanvasBudget = FULL_BUDGET) -> Any:
    """Compile the canvas code grammar (``code``) or JSON grammar (``json``) for one tokenizer.

    Args:
        info: The tokenizer's ``xgrammar.TokenizerInfo``.
        output: The output mode.
        budget: The canvas budget the grammar enforces.

    Returns:
        The ``xgrammar.CompiledGrammar``, compiled once per backend and shared by every request.
    """
    import xgrammar as xgr

    # JSON mode compiles the canvas JSON grammar rather than the schema: the same canvases in
    # compact form (as ``Canvas.model_dump_json`` writes them), with far cheaper token masks.
    json_mode = output is OutputMode.JSON
    text = decoding_json_grammar(budget) if json_mode else decoding_grammar(budget)
    grammar = xgr.Grammar.from_ebnf(text)
    # The backend keeps its one compiled grammar, so xgrammar's cache would only cost.
    compiler = xgr.GrammarCompiler(info, cache_enabled=False)
    return compiler.compile_grammar(grammar)


def _stop_ids(model: Any, tokenizer: Any) -> set[int]:
    ids = model.generation_config.eos_token_id or model.config.eos_token_id
    stop = set(ids if isinstance(ids, list) else [ids]) if ids is not None else set()
    if tokenizer.eos_token_id is not None:
        stop.add(int(tokenizer.eos_token_id))
    return {int(i) for i in stop}
