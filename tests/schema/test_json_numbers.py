"""Number fields refuse booleans and strings, keep their JSON-schema bounds, accept 4.0 as 4."""

from __future__ import annotations

from typing import Annotated

import pytest
from omost_schema.json_numbers import NUMBER_ONLY, JsonFloat, JsonInt
from pydantic import BaseModel, Field, ValidationError


class Numbers(BaseModel):
    steps: Annotated[int, Field(ge=1, le=10), NUMBER_ONLY] = 1
    seed: JsonInt | None = None
    cfg: JsonFloat = 1.0


@pytest.mark.parametrize("body", ['{"steps": true}', '{"seed": false}', '{"cfg": "5"}'])
def test_booleans_and_strings_are_refused(body: str) -> None:
    with pytest.raises(ValidationError, match="must be a number"):
        Numbers.model_validate_json(body)


def test_numbers_pass_and_integral_floats_are_integers() -> None:
    parsed = Numbers.model_validate_json('{"steps": 4.0, "seed": null, "cfg": 2}')
    assert (parsed.steps, parsed.seed, parsed.cfg) == (4, None, 2.0)
    with pytest.raises(ValidationError, match="less than or equal"):
        Numbers.model_validate_json('{"steps": 11}')


def test_bounds_stay_in_the_json_schema() -> None:
    steps = Numbers.model_json_schema()["properties"]["steps"]
    assert (steps["minimum"], steps["maximum"], steps["type"]) == (1, 10, "integer")
