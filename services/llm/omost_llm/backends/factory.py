"""Pick the backend that ``OMOST_LLM_BACKEND`` names."""

from __future__ import annotations

from omost_llm.config import BackendKind, Settings
from omost_llm.protocol import Backend


def make_backend(settings: Settings) -> Backend:
    """Build (not start) the backend the settings name."""
    if settings.backend is BackendKind.TRANSFORMERS:
        from omost_llm.backends.transformers_backend import TransformersBackend

        return TransformersBackend(settings)
    from omost_llm.backends.openai_backend import OpenAIBackend, VLLMBackend

    if settings.backend is BackendKind.VLLM:
        return VLLMBackend(settings)
    return OpenAIBackend(settings)
