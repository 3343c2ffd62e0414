"""Every Redis key, stream name and time-to-live of the renderer job service, in one place.

Keys are shaped ``omost:render:<kind>[:<id>]`` so one Redis can be shared with other services.
"""

#: The job stream: one entry ``{job: <id>}`` per queued attempt; entries are deleted once acked.
#: Jobs of a named model go to that model's stream (``stream_key``); this one holds the jobs of
#: workers that serve no named model (a ``factory`` pipeline).
STREAM_KEY = "omost:render:stream"
#: Set of the model names that have a job stream of their own (for ``/metrics``).
MODELS_KEY = "omost:render:models"
#: The single consumer group every worker reads the job stream with.
GROUP_NAME = "omost-render-workers"
#: Jobs that could not be completed within their attempts (never trimmed by the service).
DEAD_LETTER_KEY = "omost:render:dead"
#: Job hash: status, attempt, progress, request and result of one job.
JOB_KEY_PREFIX = "omost:render:job:"
#: Per-job stream of status and progress events (what Server-Sent Events replay).
EVENTS_KEY_PREFIX = "omost:render:events:"
#: Per-job stream of the latest step previews: capped, short-lived, never replayed by resume.
PREVIEWS_KEY_PREFIX = "omost:render:previews:"
#: Sorted set of the sequence numbers of entries canceled while queued (for queue positions).
CANCELED_KEY = "omost:render:canceled"
#: Sorted set of live workers, scored by when their health key expires (for ``/metrics``).
WORKERS_KEY = "omost:render:workers"
#: ``SET NX`` key that maps a client's ``Idempotency-Key`` to the job it created.
IDEMPOTENCY_KEY_PREFIX = "omost:render:idempotency:"
#: Worker health key, refreshed by every heartbeat; ``omost-renderer worker --check`` reads it.
WORKER_HEALTH_KEY_PREFIX = "omost:render:worker:"
#: Hash of counters the workers keep for ``/metrics`` (histogram buckets, redeliveries).
METRICS_KEY = "omost:render:metrics"
#: Held (``SET NX PX``) by the one worker that runs the results cleanup in an interval.
CLEANUP_LOCK_KEY = "omost:render:cleanup"
#: Webhook deliveries waiting to be sent: one entry ``{job, event, data, url, key, ...}`` per event,
#: written by the script of the job's transition, deleted once delivered or given up.
WEBHOOK_STREAM_KEY = "omost:render:webhooks"
#: The consumer group the API processes deliver webhooks with (each delivery taken by one).
WEBHOOK_GROUP_NAME = "omost-render-webhooks"
#: Sorted set of deliveries to retry, scored by when (Unix seconds); moved back to the stream.
WEBHOOK_RETRY_KEY = "omost:render:webhooks:retry"

#: Per-key quota counters: ``<prefix><key name>:requests:<minute>``, ``:jobs`` (a sorted set of
#: the key's live job ids) and ``:budget:<UTC day>`` (pixel-steps used).
QUOTA_KEY_PREFIX = "omost:render:quota:"
#: Fair scheduling: queued jobs of one API key in a job stream at once. The key's other queued
#: jobs wait in its backlog (``backlog_key``) and enter the stream, in order, as these start, so
#: the stream interleaves the keys round-robin and one key's backlog never starves another key.
FAIR_SHARE = 1
#: Key name of jobs made without API keys; they all share one caller, so they skip the lanes.
OPEN_KEY_NAME = "anonymous"

#: A worker health key lives this many heartbeats, so one missed beat does not fail a probe.
HEALTH_TTL_HEARTBEATS = 3
#: Seconds an idempotency key is remembered by default.
DEFAULT_IDEMPOTENCY_TTL_S = 24 * 3600
#: A job's event stream is trimmed to about this many events while it runs (progress of at most
#: a few attempts of the longest accepted render).
EVENTS_MAXLEN = 1000
#: Seconds a job's event stream outlives the job's end, for clients still following it; later
#: the final event is served from the job hash, where it is copied when the job ends.
EVENTS_LINGER_S = 60
#: Previews kept per job: only the latest, so a late or resuming client sees where the job is.
PREVIEWS_MAXLEN = 1
#: Seconds the latest preview outlives its last update (it is never kept with a finished job).
PREVIEW_TTL_S = 30

#: Histogram bucket upper bounds (seconds) for the time from enqueue to start.
WAIT_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)
#: Histogram bucket upper bounds (seconds) for the time from start to finish.
RUN_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 30.0, 60.0, 120.0, 300.0, 600.0)


def stream_key(model: str | None) -> str:
    """Return the job stream of a model's jobs (``STREAM_KEY`` for no named model)."""
    return STREAM_KEY if model is None else f"{STREAM_KEY}:{model}"


def canceled_key(model: str | None) -> str:
    """Return the sorted set of entries canceled while queued in a model's stream."""
    return CANCELED_KEY if model is None else f"{CANCELED_KEY}:{model}"


def lane_key(stream: str, key_name: str) -> str:
    """Return the sorted set of a key's queued jobs in ``stream`` (at most ``FAIR_SHARE``)."""
    return f"{stream}:lane:{key_name}"


def backlog_key(stream: str, key_name: str) -> str:
    """Return the list of a key's queued jobs waiting to enter ``stream``, oldest first."""
    return f"{stream}:backlog:{key_name}"


def backlogged_key(stream: str) -> str:
    """Return the counter of the jobs waiting in every backlog of ``stream``."""
    return f"{stream}:backlogged"


def job_key(job_id: str) -> str:
    """Return the hash key of a job."""
    return f"{JOB_KEY_PREFIX}{job_id}"


def events_key(job_id: str) -> str:
    """Return the event stream key of a job."""
    return f"{EVENTS_KEY_PREFIX}{job_id}"


def previews_key(job_id: str) -> str:
    """Return the preview stream key of a job."""
    return f"{PREVIEWS_KEY_PREFIX}{job_id}"


def idempotency_key(client_key: str) -> str:
    """Return the Redis key remembering a client's idempotency key."""
    return f"{IDEMPOTENCY_KEY_PREFIX}{client_key}"


def worker_health_key(worker_name: str) -> str:
    """Return the health key of a worker."""
    return f"{WORKER_HEALTH_KEY_PREFIX}{worker_name}"


def quota_requests_key(name: str, minute: int) -> str:
    """Return the counter of a key's requests in one minute (``int(unix time / 60)``)."""
    return f"{QUOTA_KEY_PREFIX}{name}:requests:{minute}"


def quota_jobs_key(name: str) -> str:
    """Return the sorted set of a key's queued and running jobs (scored by admission time)."""
    return f"{QUOTA_KEY_PREFIX}{name}:jobs"


def quota_budget_key(name: str, day: str) -> str:
    """Return the counter of a key's rendered pixel-steps on one UTC day (``YYYY-MM-DD``)."""
    return f"{QUOTA_KEY_PREFIX}{name}:budget:{day}"
