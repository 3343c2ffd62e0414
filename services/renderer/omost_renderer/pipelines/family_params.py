"""Which request parameters a model family takes, maps or refuses, so none is dropped silently.

``RenderParams`` carries SDXL's knobs. A family that lacks one (FLUX.1 has no negative prompt;
FLUX.1-schnell and the step-distilled FLUX.2 klein have no guidance at all) refuses a request
that sets it explicitly; a family that has it under another meaning maps it (``cfg`` is
FLUX.1-dev's distilled guidance value; for FLUX.2 klein base it is the classifier-free guidance
scale and the negative prompt is used, as for SDXL). A
parameter at its default value counts as unset, whether a client sent it or not (a job's
parameters travel as JSON with every field), and is never an error: the default means "the
family's default".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from omost_renderer.pipelines.rendering import RenderParams


class UnsupportedParamError(ValueError):
    """A request sets a parameter that the model's family does not take.

    Attributes:
        param: The parameter's name.
    """

    def __init__(self, param: str, message: str) -> None:
        super().__init__(message)
        self.param = param


@dataclass(frozen=True)
class FamilyParams:
    """What a model does with the parameters some families lack.

    Attributes:
        family: ``sdxl``, ``flux`` (FLUX.1) or ``flux2`` (FLUX.2 klein).
        cfg: ``"cfg"``: classifier-free guidance scale; ``"guidance"``: the distilled guidance
            embedding's value; ``None``: refused.
        negative_prompt: Whether a negative prompt is used.
        hires: Whether the hires fix runs.
    """

    family: str
    cfg: Literal["cfg", "guidance"] | None = "cfg"
    negative_prompt: bool = True
    hires: bool = True

    def capabilities(self) -> dict[str, object]:
        """The parameters as ``GET /v1/models`` lists them."""
        return {"cfg": self.cfg, "negative_prompt": self.negative_prompt, "hires": self.hires}


def is_set(params: RenderParams, name: str) -> bool:
    """Whether a parameter differs from its default (what "the request sets it" means here)."""
    return bool(getattr(params, name) != RenderParams.model_fields[name].default)


def check_family_params(family: FamilyParams, params: RenderParams) -> None:
    """Refuse parameters that the request sets and the family does not take.

    Args:
        family: The model's parameters.
        params: The request's.

    Raises:
        UnsupportedParamError: Naming the first such parameter.
    """
    if family.cfg is None and is_set(params, "cfg"):
        raise UnsupportedParamError(
            "cfg", f"{family.family} models of this kind take no guidance scale; leave cfg unset"
        )
    if not family.negative_prompt and is_set(params, "negative_prompt"):
        raise UnsupportedParamError(
            "negative_prompt", f"{family.family} models take no negative prompt; leave it unset"
        )
    if not family.hires and params.hires:
        raise UnsupportedParamError(
            "hires_scale", f"{family.family} models have no hires fix; leave hires_scale unset"
        )


def family_params_of(renderer: Any) -> FamilyParams:
    """The parameters a loaded renderer takes: its ``family_params``, SDXL's when it has none."""
    params = getattr(renderer, "family_params", None)
    return params if isinstance(params, FamilyParams) else FamilyParams(family="sdxl")
