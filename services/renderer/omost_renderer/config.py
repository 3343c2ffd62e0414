"""Settings of the renderer service, read once from the environment at start-up and passed in."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from omost_renderer.webhooks.events import URLPolicy, parse_secrets, secret_bytes


class KeyLimits(BaseModel):
    """Per-key overrides of the quota defaults (``key_limits``); unset fields keep the default."""

    model_config = ConfigDict(extra="forbid")

    requests_per_minute: int | None = Field(default=None, ge=0)
    jobs: int | None = Field(default=None, ge=0)
    daily_megapixel_steps: float | None = Field(default=None, ge=0)


class Settings(BaseSettings):
    """Every setting of the API and the worker: env ``OMOST_RENDERER_*`` and ``OMOST_REDIS_URL``."""

    model_config = SettingsConfigDict(env_prefix="OMOST_RENDERER_", extra="ignore")

    redis_url: str = Field(
        default="redis://localhost:6379/0",
        validation_alias=AliasChoices("OMOST_REDIS_URL", "redis_url"),
        description="Redis holding the job stream, job hashes and events.",
    )
    model: str | None = Field(
        default=None,
        description="Pipeline to load: a hub id, a local folder, a .safetensors file, or `tiny`"
        " (random weights, for tests and CPU demos). A worker needs it unless `factory` is set.",
    )
    default_model: str | None = Field(
        default=None,
        description="Served model that renders a job sent without `model`; when unset, the only"
        " model a live worker serves (several served: `model` is required).",
    )
    regional_steps: int = Field(
        default=10,
        ge=0,
        le=100,
        description="FLUX: the regional mask applies in the first this many steps of each pass.",
    )
    regional_blocks: int = Field(
        default=1,
        ge=1,
        description="FLUX: the regional mask applies at every this-many-th block (2: alternate).",
    )
    base_ratio: float = Field(
        default=0.2,
        ge=0.0,
        le=1.0,
        description="FLUX: share of an unmasked pass blended in at masked blocks (0: none runs).",
    )
    image_attention: Literal["free", "restricted"] = Field(
        default="free",
        description="FLUX: image-to-image attention under the mask, free or restricted to shared"
        " regions.",
    )
    single_file_config: str | None = Field(
        default=None,
        description="For a .safetensors `model`: hub id or local diffusers folder with its configs"
        " and tokenizers (needed offline); inferred from the file when unset.",
    )
    factory: str | None = Field(
        default=None,
        description="`module:callable` returning a CanvasRenderer; overrides `model` when set.",
    )
    device: str = Field(default="cuda", description="Torch device of the pipeline.")
    dtype: Literal["float16", "bfloat16", "float32"] = Field(
        default="float16", description="Torch dtype of the pipeline weights."
    )
    compile: bool = Field(
        default=False,
        description="torch.compile the denoiser's repeated blocks at load (regional compilation;"
        " the first render pays the compile). Off until measured (`make bench BENCH=gpu`).",
    )
    channels_last: bool = Field(
        default=False,
        description="SDXL: UNet weights in channels-last memory format. Off until measured;"
        " refused for FLUX.",
    )
    fuse_qkv: bool = Field(
        default=False,
        description="Fused query/key/value projections of the denoiser's attention (SDXL, FLUX.1,"
        " FLUX.2). Off until measured.",
    )
    text_cache_mb: int = Field(
        default=256,
        ge=0,
        le=4096,
        description="Bound of the worker's cache of encoded prompts, in MiB (0: no cache).",
    )
    worker_name: str | None = Field(
        default=None, description="Consumer name of this worker; `<host>-<pid>` when unset."
    )
    reclaim_after_s: float = Field(
        default=60.0, gt=0, description="Idle time after which another worker takes over a job."
    )
    heartbeat_s: float | None = Field(
        default=None, gt=0, description="Heartbeat period; a quarter of `reclaim_after_s` if unset."
    )
    max_attempts: int = Field(
        default=3, ge=1, description="Attempts before a job is dead-lettered."
    )
    max_backlog: int = Field(
        default=1000, ge=1, description="Queued plus running jobs above which submits get 503."
    )
    retry_after_s: int = Field(default=5, ge=1, description="`Retry-After` of a 503 answer.")
    max_request_bytes: int = Field(
        default=2_000_000,
        gt=0,
        description="Largest request body in bytes (counted as it arrives); larger gets 413.",
    )
    job_ttl_s: int = Field(
        default=24 * 3600, ge=1, description="How long a finished job and its results are kept."
    )
    canceled_ttl_s: int = Field(
        default=3600,
        ge=1,
        description="How long a canceled job is kept (its record only, no request).",
    )
    idempotency_ttl_s: int = Field(
        default=24 * 3600, ge=1, description="How long an `Idempotency-Key` maps to its job."
    )
    results_dir: Path = Field(default=Path("results"), description="Folder of result images.")
    storage: Literal["file", "s3"] = Field(default="file", description="Where results are kept.")
    s3_bucket: str | None = Field(default=None, description="Bucket of the S3-compatible store.")
    s3_endpoint_url: str | None = Field(default=None, description="Endpoint of the S3 store.")
    s3_prefix: str = Field(
        default="omost-render/",
        pattern=r"^[A-Za-z0-9._-]+(/[A-Za-z0-9._-]+)*/?$",
        description="Key prefix of the service's objects in the bucket; cleanup touches nothing"
        " outside it.",
    )
    s3_access_key_id: SecretStr | None = Field(default=None, description="S3 access key id.")
    s3_secret_access_key: SecretStr | None = Field(default=None, description="S3 secret key.")
    preview_every: int = Field(
        default=5, ge=0, description="Send a preview image every this many steps (0: never)."
    )
    preview_size: int = Field(default=96, ge=16, le=512, description="Longest preview side.")
    block_ms: int = Field(
        default=1000, ge=10, description="How long a worker blocks reading the stream."
    )
    stall_after_s: float = Field(
        default=300.0,
        gt=0,
        description="A render with no step for this long is stalled: its job is released and"
        " retried elsewhere, and the worker exits if the render does not come back.",
    )
    deadline_base_s: float = Field(
        default=300.0,
        gt=0,
        description="Per-job deadline: this many seconds plus `deadline_step_s` per step.",
    )
    deadline_step_s: float = Field(
        default=30.0, gt=0, description="Seconds a job's deadline grants per denoising step."
    )
    cleanup_interval_s: float = Field(
        default=3600.0,
        gt=0,
        description="Old results are deleted once per this interval, by one worker of the fleet.",
    )
    shutdown_grace_s: float = Field(
        default=30.0, ge=0, description="On SIGTERM, time to finish the job before releasing it."
    )
    max_batch: int = Field(
        default=1,
        ge=1,
        le=16,
        description="Jobs a worker renders at once, stepped together (one model call per step for"
        " the jobs of one latent shape). 1 until measured on a GPU; at most 16: every held job"
        " keeps its latents and conditioning on the device, and a step's time grows with its"
        " rows once the GPU is busy. A renderer without `render_steps` holds one job.",
    )
    llm_url: str = Field(
        default="http://localhost:8000", description="Base URL of the LLM service (`omost-llm`)."
    )
    llm_seed: int | None = Field(
        default=None, description="Seed sent with every canvas request (reproducible canvases)."
    )
    llm_timeout_s: float = Field(default=120.0, gt=0, description="Timeout of one LLM call.")
    images_timeout_s: float = Field(
        default=600.0, gt=0, description="How long `/v1/images/generations` waits for a render."
    )
    images_steps: int = Field(
        default=25, ge=1, le=100, description="Steps of renders made by `/v1/images/generations`."
    )

    webhook_secret: SecretStr | None = Field(
        default=None,
        description="Signing secret of webhook deliveries (`whsec_` + base64, the Standard"
        " Webhooks form); a webhook is refused at submit when its key has no secret.",
    )
    webhook_secrets: SecretStr | None = Field(
        default=None,
        description="Per-key signing secrets: comma-separated `name=whsec_...` pairs (API key"
        " names); a key without one uses `webhook_secret`.",
    )
    webhook_allowed_hosts: str = Field(
        default="",
        description="Comma-separated host names and CIDRs webhooks may call although private,"
        " loopback or link-local, over http too; otherwise only https to public addresses.",
    )
    webhook_progress_every: int = Field(
        default=5, ge=1, description="A `progress` webhook is sent at most every this many steps."
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, description="Timeout of one webhook delivery attempt."
    )
    webhook_retry_base_s: float = Field(
        default=5.0,
        gt=0,
        description="First retry delay of a failed delivery; each retry doubles it (at most an"
        " hour between attempts).",
    )
    webhook_retry_for_s: float = Field(
        default=24 * 3600.0,
        gt=0,
        description="A delivery is retried for this long after its first attempt, then dropped"
        " (logged and counted).",
    )
    webhook_reclaim_after_s: float = Field(
        default=60.0,
        gt=0,
        description="A delivery taken by an API process that then died is taken over by another"
        " after this long.",
    )

    @field_validator("webhook_secret")
    @classmethod
    def _webhook_secret_form(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            secret_bytes(value.get_secret_value())
        return value

    @field_validator("webhook_secrets")
    @classmethod
    def _webhook_secrets_form(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None:
            parse_secrets(value.get_secret_value())
        return value

    @field_validator("webhook_allowed_hosts")
    @classmethod
    def _allowed_hosts_form(cls, value: str) -> str:
        URLPolicy.parse(value)
        return value

    api_keys: SecretStr = Field(
        default=SecretStr(""),
        description="API keys: comma-separated `name=key` pairs (`name=sha256:<hex>` for a"
        " stored hash), or `@/path` to a file of one pair a line. Empty: open to anyone.",
    )
    require_api_keys: bool = Field(
        default=False,
        description="Refuse to start the API without `api_keys` (compose and Kubernetes set it).",
    )
    metrics_api_key: SecretStr | None = Field(
        default=None, description="Bearer key `/metrics` requires; unset: `/metrics` is open."
    )
    llm_api_key: SecretStr | None = Field(
        default=None,
        description="The renderer's own key for the LLM service (sent by `/llm/*` and the Images"
        " API; a caller's key is never passed on).",
    )
    requests_per_minute: int = Field(
        default=600, ge=0, description="Requests a minute per API key (0: no limit)."
    )
    jobs_per_key: int = Field(
        default=32, ge=0, description="Render jobs queued or running at once per key (0: no limit)."
    )
    daily_megapixel_steps: float = Field(
        default=50_000.0,
        ge=0,
        description="Rendered megapixel-steps (pixels times steps / 1e6) a key may use per UTC"
        " day (0: no limit).",
    )
    key_limits: dict[str, KeyLimits] = Field(
        default_factory=dict,
        description='Per-key overrides, JSON: `{"name": {"requests_per_minute": 60, "jobs": 4,'
        ' "daily_megapixel_steps": 1000}}`.',
    )

    @property
    def heartbeat_interval_s(self) -> float:
        """The heartbeat period: explicit, or a quarter of the reclaim time."""
        return self.heartbeat_s if self.heartbeat_s is not None else self.reclaim_after_s / 4
