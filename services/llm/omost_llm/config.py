"""Settings of the LLM service, read once at start-up from ``OMOST_LLM_*`` environment variables."""

from __future__ import annotations

import sys
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class BackendKind(StrEnum):
    """Where the tokens come from."""

    VLLM = "vllm"
    OPENAI = "openai"
    TRANSFORMERS = "transformers"


class OutputMode(StrEnum):
    """What the model writes: Omost code under a grammar, or canvas JSON under a schema."""

    CODE = "code"
    JSON = "json"


class BudgetChoice(StrEnum):
    """Which canvas budget bounds what the model may write (``omost_schema.CanvasBudget``)."""

    AUTO = "auto"
    COMPACT = "compact"
    FULL = "full"


def _default_cache_dir() -> Path:
    # Inside the environment the service is installed in, where `scripts/fetch-tiny-vocab.sh`
    # puts the tokenizer vocabulary of the `tiny` model.
    return Path(sys.prefix) / "share" / "omost-llm"


class KeyLimits(BaseModel):
    """Per-key overrides of the rate-limit defaults (``key_limits``); unset fields keep them."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(None, ge=0)
    tokens_per_minute: int | None = Field(None, ge=0)


class Settings(BaseSettings):
    """Every setting of the service; see ``docs/llm.md`` for the table."""

    model_config = SettingsConfigDict(env_prefix="OMOST_LLM_", extra="ignore")

    backend: BackendKind = Field(BackendKind.TRANSFORMERS, description="Token source.")
    model: str = Field(
        "smollm2",
        description="Hub id, local folder, `tiny` (random weights) or `smollm2` (bundled GGUF).",
    )
    served_model_name: str | None = Field(
        None, description="Model id shown in /v1/models and answers (default: `model`)."
    )
    base_url: str = Field(
        "http://127.0.0.1:8100",
        description="Upstream server root for `vllm` / `openai` (the service itself takes 8000).",
    )
    api_key: SecretStr = Field(SecretStr(""), description="Bearer token for the upstream server.")
    upstream_model: str | None = Field(
        None, description="Model name sent upstream (default: `model`)."
    )
    output: OutputMode = Field(OutputMode.CODE, description="`code` (grammar) or `json` (schema).")
    constrained: bool = Field(
        True, description="Constrain decoding (off only to measure unconstrained decoding)."
    )
    openai_json_schema: bool = Field(
        True, description="The `openai` upstream accepts response_format json_schema."
    )
    warmup: bool = Field(True, description="Compile the grammar and run one request at start-up.")
    canvas_budget: BudgetChoice = Field(
        BudgetChoice.AUTO,
        description=(
            "Canvas budget: `compact` (3 locals, 1 detailed description, 100 characters per "
            "string), `full` (the canvas limits) or `auto` (compact for `smollm2` and `tiny`, "
            "full otherwise); requests may only lower it."
        ),
    )
    prompt_lookup_tokens: int = Field(
        8,
        ge=0,
        le=64,
        description=(
            "Prompt-lookup speculative decoding of the `transformers` backend: most draft "
            "tokens per verification, for requests that edit a canvas (0: off)."
        ),
    )
    prompt_lookup_ngram: int = Field(
        3,
        ge=1,
        le=16,
        description="Tokens of generated text matched against the prompt to find a draft.",
    )
    jump_forward: bool = Field(
        True,
        description=(
            "Draft the tokens of the text the grammar forces, verified in the next forward pass"
            " (`transformers` backend; at most 32 per pass)."
        ),
    )

    device: str = Field("cpu", description="Torch device of the `transformers` backend.")
    dtype: str = Field("float32", description="Torch dtype of the `transformers` backend.")
    threads: int = Field(0, ge=0, description="Torch CPU threads (0: torch's default).")
    cache_dir: Path = Field(
        default_factory=_default_cache_dir,
        description="Where the `tiny` model is built and its tokenizer vocabulary is found.",
    )
    seed: int = Field(0, description="Seed of the `tiny` model's random weights.")

    max_request_bytes: int = Field(1_000_000, gt=0, description="Largest request body.")
    max_messages: int = Field(64, gt=0, description="Most messages in one chat request.")
    max_message_chars: int = Field(200_000, gt=0, description="Longest single message.")
    max_tokens_limit: int = Field(8192, gt=0, description="Largest `max_tokens` accepted.")
    default_max_tokens: int = Field(4096, gt=0, description="`max_tokens` when none is given.")
    max_model_len: int | None = Field(
        None,
        gt=0,
        description=(
            "Context length of the model in tokens (default: the backend's own, from vLLM's "
            "`/v1/models` or the model config; the smaller one when both are known)."
        ),
    )
    min_answer_tokens: int = Field(
        2048,
        gt=0,
        description=(
            "Room a prompt must leave for the answer (or `max_tokens` when smaller); older "
            "turns are left out to make it."
        ),
    )
    max_concurrency: int = Field(8, gt=0, description="Generations running at once.")
    max_queue: int = Field(32, ge=0, description="Requests waiting beyond that; then 429.")
    request_timeout_s: float = Field(600.0, gt=0, description="Whole-generation time limit.")
    connect_timeout_s: float = Field(5.0, gt=0, description="Upstream connect time limit.")
    retry_after_s: int = Field(1, ge=0, description="`Retry-After` on 429 and 503 answers.")

    api_keys: SecretStr = Field(
        SecretStr(""),
        description=(
            "API keys: comma-separated `name=key` pairs (`name=sha256:<hex>` for a stored "
            "hash), or `@/path` to a file of one pair a line. Empty: open to anyone."
        ),
    )
    require_api_keys: bool = Field(
        False, description="Refuse to start without `api_keys` (compose and Kubernetes set it)."
    )
    metrics_api_key: SecretStr | None = Field(
        None, description="Bearer key `/metrics` requires; unset: `/metrics` is open."
    )
    requests_per_minute: int = Field(
        600, ge=0, description="Requests a minute per API key, per replica (0: no limit)."
    )
    tokens_per_minute: int = Field(
        1_000_000,
        ge=0,
        description=(
            "Tokens a minute per API key, per replica (0: no limit); a request counts its "
            "prompt (characters / 4) plus its `max_tokens`, as OpenAI estimates."
        ),
    )
    key_limits: dict[str, KeyLimits] = Field(
        default_factory=dict,
        description=(
            'Per-key overrides, JSON: `{"name": {"requests_per_minute": 60, '
            '"tokens_per_minute": 100000}}`.'
        ),
    )

    host: str = Field("127.0.0.1", description="Bind address of `omost-llm serve`.")
    port: int = Field(8000, description="Port of `omost-llm serve`.")

    @property
    def model_id(self) -> str:
        """The model name clients see."""
        return self.served_model_name or self.model

    @property
    def upstream_model_id(self) -> str:
        """The model name sent to an upstream server."""
        return self.upstream_model or self.model
