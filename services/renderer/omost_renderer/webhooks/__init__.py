"""Webhooks of render jobs: the request field, signatures, URL policy, and delivery."""
