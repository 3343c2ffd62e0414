"""Diffusion pipelines, one package per family (``sdxl/``, ``flux/``, ``flux2/``).

Beside the families sit what they share: the render seam, loading, regional attention, the sketch
and edit starts, the VAE codec and previews.
"""
