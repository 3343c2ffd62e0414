"""The job queue in Redis: job records, keys, Lua scripts, both sides of the queue, quotas."""
