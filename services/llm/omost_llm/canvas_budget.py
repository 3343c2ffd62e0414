"""The canvas budget of a request: the model's own, or a smaller one the request asks for."""

from __future__ import annotations

from dataclasses import replace

from omost_schema import COMPACT_BUDGET, FULL_BUDGET, CanvasBudget
from omost_schema.limits import BUDGET_FIELDS

from omost_llm.api_models import BudgetIn
from omost_llm.config import BudgetChoice, Settings
from omost_llm.errors import BadRequestError
from omost_llm.tiny import TINY_MODEL

# Small generic models on the CPU: sampling sends them into repetition, where they fill every
# string and list to its bound; the compact budget makes them finish in about a minute.
_SMALL_MODELS = frozenset({TINY_MODEL, "smollm2"})


def model_budget(settings: Settings) -> CanvasBudget:
    """The budget of the served model: the default of every request and its maximum.

    ``OMOST_LLM_CANVAS_BUDGET=auto`` gives the compact budget to the small CPU models
    (``smollm2``, ``tiny``) and Omost's full budget to every other model.
    """
    if settings.canvas_budget is BudgetChoice.COMPACT:
        return COMPACT_BUDGET
    if settings.canvas_budget is BudgetChoice.FULL:
        return FULL_BUDGET
    return COMPACT_BUDGET if settings.model in _SMALL_MODELS else FULL_BUDGET


def request_budget(maximum: CanvasBudget, requested: BudgetIn | None, param: str) -> CanvasBudget:
    """The budget of one request: ``maximum`` with the fields the request lowers.

    Args:
        maximum: The model's budget.
        requested: The request's budget fields (each optional), or ``None``.
        param: Where the budget sits in the request, for error messages.

    Returns:
        The budget to decode with.

    Raises:
        BadRequestError: A field is above the model's budget (``budget_too_large``).
    """
    if requested is None:
        return maximum
    changes = {name: value for name, value in requested.model_dump().items() if value is not None}
    for name, value in changes.items():
        most = getattr(maximum, name)
        if value > most:
            raise BadRequestError(
                f"{param}.{name} is {value}; this model's canvas budget allows at most {most}",
                param=f"{param}.{name}",
                code="budget_too_large",
            )
    assert set(changes) <= set(BUDGET_FIELDS)
    return replace(maximum, **changes)
