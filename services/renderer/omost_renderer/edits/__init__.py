"""Edits that keep the image and init images: the plan (API), the start a worker reads."""
