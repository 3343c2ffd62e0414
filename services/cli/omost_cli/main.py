"""The ``omost`` command: run the stack, compose a canvas, render it, follow a job."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

from omost_schema import Canvas, CanvasCodeError

from omost_cli.client import (
    ServiceError,
    compose_canvas,
    draw_token_bar,
    follow_job,
    save_images,
    submit_render,
)
from omost_cli.dotenv import read_dotenv
from omost_cli.gpus import count_gpus
from omost_cli.local_stack import StackError, run_stack
from omost_cli.stack_plan import plan_stack

_DEFAULT_LLM_URL = "http://127.0.0.1:8000"
_DEFAULT_RENDERER_URL = "http://127.0.0.1:8001"


def _cmd_run(args: argparse.Namespace) -> int:
    plan = plan_stack(os.environ, read_dotenv(Path(args.env_file)), count_gpus())
    return run_stack(plan)


def _read_canvas(path: Path) -> dict[str, Any]:
    """Read a canvas file: JSON, or Omost code (a ``.py`` file or a saved model answer)."""
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        return Canvas.model_validate_json(text).model_dump()
    return Canvas.from_code(text).model_dump()


def _cmd_compose(args: argparse.Namespace) -> int:
    previous = _read_canvas(Path(args.previous)) if args.previous else None
    started = time.monotonic()
    answer = compose_canvas(
        args.llm_url,
        args.prompt,
        previous_canvas=previous,
        seed=args.seed,
        max_tokens=args.max_tokens,
        on_tokens=lambda tokens, total: draw_token_bar(tokens, total, started),
        api_key=args.api_key,
    )
    print(file=sys.stderr)
    for correction in answer.get("corrections", []):
        print(
            f"corrected {correction['original']!r} -> {correction['corrected']!r}", file=sys.stderr
        )
    print(answer["code"])
    if args.out:
        Path(args.out).write_text(json.dumps(answer["canvas"], indent=2) + "\n", encoding="utf-8")
        print(f"canvas written to {args.out}", file=sys.stderr)
    return 0


def _cmd_render(args: argparse.Namespace) -> int:
    body: dict[str, Any] = {"canvas": _read_canvas(Path(args.canvas))}
    names = ("model", "width", "height", "steps", "cfg", "seed", "num_images", "negative_prompt")
    for name in names:
        value = getattr(args, name)
        if value is not None:
            body[name] = value
    job = submit_render(args.renderer_url, body, api_key=args.api_key)
    print(f"job {job['id']} {job['status']}", file=sys.stderr)
    if args.no_wait:
        print(job["id"])
        return 0
    return _finish(args.renderer_url, job["id"], Path(args.out), args.api_key)


def _finish(renderer_url: str, job_id: str, out: Path, api_key: str | None) -> int:
    job = follow_job(renderer_url, job_id, api_key=api_key)
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        print(f"job {job_id} {job['status']}: {error.get('message', '')}", file=sys.stderr)
        return 1
    for path in save_images(renderer_url, job, out, api_key=api_key):
        print(path)
    return 0


def _cmd_follow(args: argparse.Namespace) -> int:
    return _finish(args.renderer_url, args.job_id, Path(args.out), args.api_key)


def build_parser() -> argparse.ArgumentParser:
    """Return the argument parser of the ``omost`` command."""
    parser = argparse.ArgumentParser(prog="omost", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run Redis, the LLM service, the renderer and workers here")
    run.add_argument("--env-file", default=".env", help="settings file (default: .env)")
    run.set_defaults(func=_cmd_run)

    llm_url = os.environ.get("OMOST_LLM_URL", _DEFAULT_LLM_URL)
    renderer_url = os.environ.get("OMOST_RENDERER_URL", _DEFAULT_RENDERER_URL)
    api_key = os.environ.get("OMOST_API_KEY") or None
    key_help = "API key, sent as a Bearer token (default: $OMOST_API_KEY)"

    compose = sub.add_parser("compose", help="compose a canvas from a prompt")
    compose.add_argument("prompt")
    compose.add_argument("--previous", help="canvas file (.json or Omost code) to edit")
    compose.add_argument("--seed", type=int)
    compose.add_argument(
        "--max-tokens", type=int, default=4096, help="most tokens of the answer (default: 4096)"
    )
    compose.add_argument("--out", help="write the canvas JSON here")
    compose.add_argument("--llm-url", default=llm_url, help="default: $OMOST_LLM_URL")
    compose.add_argument("--api-key", default=api_key, help=key_help)
    compose.set_defaults(func=_cmd_compose)

    render = sub.add_parser("render", help="render a canvas file and save the images")
    render.add_argument("canvas", help="canvas file: .json, or Omost code")
    render.add_argument("--model", help="served model to render with (default: the service's)")
    render.add_argument("--width", type=int)
    render.add_argument("--height", type=int)
    render.add_argument("--steps", type=int)
    render.add_argument("--cfg", type=float)
    render.add_argument("--seed", type=int)
    render.add_argument("--num-images", type=int)
    render.add_argument("--negative-prompt")
    render.add_argument("--out", default=".", help="folder for the images (default: .)")
    render.add_argument("--no-wait", action="store_true", help="print the job id and exit")
    render.add_argument("--renderer-url", default=renderer_url, help="default: $OMOST_RENDERER_URL")
    render.add_argument("--api-key", default=api_key, help=key_help)
    render.set_defaults(func=_cmd_render)

    follow = sub.add_parser("follow", help="follow a render job and save its images")
    follow.add_argument("job_id")
    follow.add_argument("--out", default=".", help="folder for the images (default: .)")
    follow.add_argument("--renderer-url", default=renderer_url, help="default: $OMOST_RENDERER_URL")
    follow.add_argument("--api-key", default=api_key, help=key_help)
    follow.set_defaults(func=_cmd_follow)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``omost`` command; return its exit code."""
    args = build_parser().parse_args(argv)
    try:
        code: int = args.func(args)
    except (ServiceError, StackError, CanvasCodeError, TimeoutError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
