"""The renderer's HTTP API: ``create_app(settings)`` builds the FastAPI application."""

from omost_renderer.api.app import create_app

__all__ = ["create_app"]
