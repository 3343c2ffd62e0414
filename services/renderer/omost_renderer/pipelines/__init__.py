"""Diffusion pipelines by model family (``flux/``) and the small modules they share."""
