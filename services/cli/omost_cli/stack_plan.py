"""What ``make run`` starts: settings resolved from the environment, ``.env`` and the hardware."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path

#: Defaults with a GPU: the best Omost model and Omost's default SDXL checkpoint, both downloaded
#: on first start (about 16 GB and 7 GB).
GPU_DEFAULTS: Mapping[str, str] = {
    "OMOST_LLM_BACKEND": "transformers",
    "OMOST_LLM_MODEL": "lllyasviel/omost-llama-3-8b",
    "OMOST_RENDERER_MODEL": "SG161222/RealVisXL_V4.0",
}
#: Defaults without a GPU: a real but small bundled instruct model, and the tiny random SDXL and
#: FLUX.1 served side by side (one worker each; a job without ``model`` goes to SDXL).
CPU_DEFAULTS: Mapping[str, str] = {
    "OMOST_LLM_BACKEND": "transformers",
    "OMOST_LLM_MODEL": "smollm2",
    # A generic instruct model: JSON under the schema (code-mode token masks cost more on CPU).
    "OMOST_LLM_OUTPUT": "json",
    "OMOST_RENDERER_MODEL": "tiny",
    "OMOST_RENDERER_MODELS": "tiny,tiny-flux",
    "OMOST_RENDERER_DEFAULT_MODEL": "tiny",
    "OMOST_RENDERER_DEVICE": "cpu",
    "OMOST_RENDERER_DTYPE": "float32",
}
#: The launcher's own setting: the models to start workers for, comma-separated (each worker
#: gets its model as ``OMOST_RENDERER_MODEL``). Unset: ``OMOST_RENDERER_MODEL`` alone.
MODELS_SETTING = "OMOST_RENDERER_MODELS"
#: Most models one launcher serves side by side (each is a worker process holding its weights).
MAX_MODELS = 4


@dataclass(frozen=True)
class StackPlan:
    """Everything needed to start the local stack.

    Attributes:
        host: Interface the HTTP services bind to.
        llm_port: Port of the LLM service.
        renderer_port: Port of the renderer API (it also serves the web page).
        redis_url: An existing Redis to use, or ``None`` to start a private redis-server.
        data_dir: Where the private Redis keeps its append-only file and where images go.
        gpus: Number of GPUs; one worker is started per GPU (one CPU worker per model when
            there is none).
        models: The models workers serve: on CPU one worker each; on GPUs, GPU ``i`` serves
            ``models[i % len(models)]``.
        env: Environment shared by every child process.
        uses_cpu_defaults: True when the tiny CPU models were chosen for lack of a GPU.
    """

    host: str
    llm_port: int
    renderer_port: int
    redis_url: str | None
    data_dir: Path
    gpus: int
    models: tuple[str, ...] = ("tiny",)
    env: dict[str, str] = field(default_factory=dict)
    uses_cpu_defaults: bool = False

    @property
    def llm_url(self) -> str:
        """Base URL of the LLM service."""
        return f"http://{self.host}:{self.llm_port}"

    @property
    def renderer_url(self) -> str:
        """Base URL of the renderer API and the web page."""
        return f"http://{self.host}:{self.renderer_port}"


def _port(settings: Mapping[str, str], name: str, default: int) -> int:
    raw = settings.get(name, str(default))
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be a port number, got {raw!r}") from None
    if not 1 <= port <= 65535:
        raise ValueError(f"{name} must be within 1..65535, got {port}")
    return port


_KEY_SETTINGS = ("OMOST_LLM_API_KEYS", "OMOST_RENDERER_API_KEYS")


def _refuse_open_network(host: str, settings: Mapping[str, str]) -> None:
    """Refuse to bind beyond this machine a service that would answer anyone (no API keys)."""
    if host == "localhost" or host.startswith("127.") or host == "::1":
        return
    missing = [name for name in _KEY_SETTINGS if not settings.get(name, "").strip()]
    if missing:
        raise ValueError(
            f"OMOST_HOST={host} makes the services reachable from the network, but"
            f" {' and '.join(missing)} {'is' if len(missing) == 1 else 'are'} empty: anyone could"
            " use them. Set API keys (docs/operations.md#security) or keep OMOST_HOST=127.0.0.1."
        )


def _models(settings: Mapping[str, str], chosen: Mapping[str, str], gpus: int) -> tuple[str, ...]:
    """The models to serve, deduplicated, in order.

    ``OMOST_RENDERER_MODELS``, unless only ``OMOST_RENDERER_MODEL`` was chosen (in the
    environment or ``.env``): that model is then served alone.
    """
    listed = settings.get(MODELS_SETTING, "")
    if MODELS_SETTING not in chosen and "OMOST_RENDERER_MODEL" in chosen:
        listed = ""
    models = tuple(dict.fromkeys(m.strip() for m in listed.split(",") if m.strip()))
    if not models:
        return (settings.get("OMOST_RENDERER_MODEL", "tiny"),)
    if len(models) > MAX_MODELS:
        raise ValueError(f"{MODELS_SETTING} names {len(models)} models; at most {MAX_MODELS}")
    if gpus and len(models) > gpus:
        raise ValueError(
            f"{MODELS_SETTING} names {len(models)} models but there are {gpus} GPUs: each model"
            " needs a GPU of its own"
        )
    return models


def plan_stack(environ: Mapping[str, str], dotenv: Mapping[str, str], gpus: int) -> StackPlan:
    """Resolve the stack's settings: the environment wins over ``.env``, which wins over defaults.

    Args:
        environ: The process environment.
        dotenv: Settings read from ``.env``.
        gpus: Number of GPUs found.

    Returns:
        The plan; the env it carries has every resolved ``OMOST_*`` setting.

    Raises:
        ValueError: If a port setting is not a valid port, ``OMOST_HOST`` is not a loopback
            address while a service has no API keys (it would be open to the network), or
            ``OMOST_RENDERER_MODELS`` names more models than allowed or than there are GPUs.
    """
    defaults = GPU_DEFAULTS if gpus > 0 else CPU_DEFAULTS
    chosen = {**dotenv, **environ}
    settings = {**defaults, **chosen}
    models = _models(settings, chosen, gpus)
    if len(models) == 1 and "OMOST_RENDERER_DEFAULT_MODEL" not in chosen:
        # One model renders every job; the CPU pair's default could name a model no one serves.
        settings.pop("OMOST_RENDERER_DEFAULT_MODEL", None)
    uses_cpu_defaults = gpus == 0 and all(
        settings.get(name) == value for name, value in CPU_DEFAULTS.items()
    )
    host = settings.get("OMOST_HOST", "127.0.0.1")
    _refuse_open_network(host, settings)
    plan = StackPlan(
        host=host,
        llm_port=_port(settings, "OMOST_LLM_PORT", 8000),
        renderer_port=_port(settings, "OMOST_RENDERER_PORT", 8001),
        redis_url=settings.get("OMOST_REDIS_URL") or None,
        data_dir=Path(settings.get("OMOST_DATA_DIR", ".omost-data")).resolve(),
        gpus=gpus,
        models=models,
        uses_cpu_defaults=uses_cpu_defaults,
    )
    env = dict(settings)
    env.setdefault("OMOST_RENDERER_LLM_URL", plan.llm_url)
    env.setdefault("OMOST_RENDERER_RESULTS_DIR", str(plan.data_dir / "results"))
    return replace(plan, env=env)
