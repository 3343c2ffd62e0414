"""What the FLUX.1 and FLUX.2 loaders share: a single transformer file, components on a device.

A single ``.safetensors`` file of an MM-DiT family is the transformer alone; its config, VAE and
text encoders come from a diffusers folder or hub id (``single_file_config``). Once loaded, the
transformer and text encoders run in the requested dtype and the VAE in its own
(``loading.vae_dtype``), all in eval mode.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch


def single_file_transformer(
    transformer_class: Any,
    path: str,
    single_file_config: str | None,
    dtype: torch.dtype,
    family: str,
    config_holds: str,
) -> tuple[Any, str]:
    """Load a transformer from one ``.safetensors`` file with diffusers' ``from_single_file``.

    Args:
        transformer_class: The diffusers transformer class (``FluxTransformer2DModel``, ...).
        path: The file.
        single_file_config: The diffusers folder or hub id that holds the transformer's config.
        dtype: Weights' dtype.
        family: The family's name in the error message (``FLUX``, ``FLUX.2``).
        config_holds: What else the config folder provides, for the error message.

    Returns:
        The transformer, and the config folder or hub id the other components come from.

    Raises:
        FileNotFoundError: For a missing file.
        ValueError: Without ``single_file_config``.
    """
    if not Path(path).is_file():
        raise FileNotFoundError(f"single-file checkpoint {path} does not exist")
    if single_file_config is None:
        raise ValueError(f"a single {family} file needs single_file_config ({config_holds})")
    transformer = transformer_class.from_single_file(
        path, config=single_file_config, subfolder="transformer", torch_dtype=dtype
    )
    return transformer, single_file_config


def place_components(
    components: dict[str, Any],
    text_encoders: Iterable[Any],
    device: str,
    dtype: torch.dtype,
    vae_dtype: torch.dtype,
) -> None:
    """Move a family's loaded modules to ``device`` in their dtypes, in eval mode (in place).

    Args:
        components: The loader's components (``transformer`` and ``vae`` keys).
        text_encoders: The family's text encoder modules.
        device: Where they run.
        dtype: The transformer's and text encoders' dtype.
        vae_dtype: The VAE's dtype.
    """
    components["transformer"].to(device=device, dtype=dtype).eval()
    components["vae"].to(device=device, dtype=vae_dtype).eval()
    for module in text_encoders:
        module.to(device=device, dtype=dtype).eval()
