"""The render worker: the job loop, its heartbeat and watch, failure kinds, health."""
