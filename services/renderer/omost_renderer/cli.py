"""``omost-renderer``: ``api --host H --port P`` serves the API; ``worker [--check]`` runs jobs."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from typing import cast

from omost_renderer.config import Settings
from omost_renderer.errors import ConfigurationError
from omost_renderer.pipelines.rendering import CanvasRenderer

#: Exit status of a worker started without a model (or with another unusable setting).
EXIT_CONFIGURATION = 2


def build_renderer(settings: Settings) -> CanvasRenderer:
    """Load the pipeline the settings name, once: a factory, the tiny CPU pipeline, or a model.

    Raises:
        ConfigurationError: Neither a model nor a factory is set. The random-weight ``tiny``
            pipeline is only ever loaded when named, never as a fallback.
    """
    if settings.factory:
        module_name, _, attribute = settings.factory.partition(":")
        factory = getattr(importlib.import_module(module_name), attribute)
        return cast(CanvasRenderer, factory())
    if settings.model is None:
        raise ConfigurationError(
            "no model: set OMOST_RENDERER_MODEL to a hub id, a folder or a .safetensors file"
            " (or to `tiny` for the random-weight test pipeline), or OMOST_RENDERER_FACTORY"
        )
    # Imported here: torch and diffusers are heavy and the API process never needs them.
    import torch

    from omost_renderer.pipelines.flux.pipeline_flux import RegionalSchedule
    from omost_renderer.pipelines.joint_mask import ImageAttention
    from omost_renderer.pipelines.loading import load_renderer
    from omost_renderer.pipelines.speed_options import SpeedOptions

    schedule = RegionalSchedule(
        regional_steps=settings.regional_steps,
        regional_blocks=settings.regional_blocks,
        base_ratio=settings.base_ratio,
        image_attention=ImageAttention(settings.image_attention),
    )
    # The random-weight ``tiny`` SDXL is a CPU model in float32 whatever the device settings say
    # (they default to a GPU's); the tiny FLUX models follow the settings like real models.
    tiny = settings.model == "tiny"
    return load_renderer(
        settings.model,
        "cpu" if tiny else settings.device,
        torch.float32 if tiny else getattr(torch, settings.dtype),
        single_file_config=settings.single_file_config,
        schedule=schedule,
        speed=SpeedOptions(
            compile=settings.compile,
            channels_last=settings.channels_last,
            fuse_qkv=settings.fuse_qkv,
        ),
        text_cache_bytes=settings.text_cache_mb * 2**20,
    )


def _run_api(settings: Settings, host: str, port: int) -> int:
    import uvicorn
    from omost_schema.api_keys import ApiKeySettingError

    from omost_renderer.api import create_app

    try:
        app = create_app(settings)
    except ApiKeySettingError as error:
        print(f"omost-renderer api: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    uvicorn.run(app, host=host, port=port, log_level="info")
    return 0


def _run_worker(settings: Settings, check: bool) -> int:
    from omost_renderer.storage.stores import build_store
    from omost_renderer.worker.runner import Worker, check_health, connect

    if check:
        return 0 if check_health(settings) else 1
    try:
        renderer = build_renderer(settings)
    except ConfigurationError as error:
        print(f"omost-renderer worker: {error}", file=sys.stderr)
        return EXIT_CONFIGURATION
    redis = connect(settings)
    try:
        # Non-zero when the device failed: the supervisor starts a fresh process.
        return Worker(settings, renderer, redis, build_store(settings)).run()
    finally:
        redis.close()


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, build the settings from the environment, and run."""
    parser = argparse.ArgumentParser(prog="omost-renderer")
    commands = parser.add_subparsers(dest="command", required=True)
    api = commands.add_parser("api", help="serve the HTTP API")
    api.add_argument("--host", default="127.0.0.1")
    api.add_argument("--port", type=int, default=8001)
    worker = commands.add_parser("worker", help="run render jobs from the queue")
    worker.add_argument(
        "--check", action="store_true", help="exit 0 if a worker is alive (a probe), 1 if not"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = Settings()
    if args.command == "api":
        return _run_api(settings, args.host, args.port)
    return _run_worker(settings, args.check)


if __name__ == "__main__":
    sys.exit(main())
