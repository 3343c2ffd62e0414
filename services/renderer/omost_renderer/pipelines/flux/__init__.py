"""FLUX.1 (diffusers' ``FluxTransformer2DModel``) with Omost's regions as joint attention."""
