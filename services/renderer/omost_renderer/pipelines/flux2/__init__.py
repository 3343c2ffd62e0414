"""FLUX.2 (diffusers' ``Flux2Transformer2DModel``, e.g. klein) with regional joint attention."""
