"""``omost-llm serve --host H --port P``: run the service with uvicorn."""

from __future__ import annotations

import argparse
from collections.abc import Sequence


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="omost-llm", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="Serve the OpenAI-compatible canvas composer.")
    serve.add_argument("--host", help="Bind address (default: OMOST_LLM_HOST or 127.0.0.1).")
    serve.add_argument("--port", type=int, help="Port (default: OMOST_LLM_PORT or 8000).")
    serve.add_argument("--log-level", default="info", help="uvicorn log level.")
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line and run the command."""
    import uvicorn
    from omost_schema.api_keys import ApiKeySettingError

    from omost_llm.config import Settings
    from omost_llm.main import create_app

    args = _parser().parse_args(argv)
    overrides = {k: v for k, v in (("host", args.host), ("port", args.port)) if v is not None}
    settings = Settings(**overrides)
    try:
        app = create_app(settings)
    except ApiKeySettingError as error:
        # A key setting that cannot be used: say so and stop, without a traceback.
        raise SystemExit(f"omost-llm serve: {error}") from None
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=args.log_level)
