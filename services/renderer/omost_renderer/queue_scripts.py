"""Lua scripts that make every queue transition atomic, shared by the API and the workers.

Each transition of a job (submit, start, progress, heartbeat, finish, requeue, cancel) reads and
writes the job hash, the job stream and the job's event stream in one step. Writes by a worker are
fenced: they check that the job is still ``running`` under the worker's attempt number, so a
worker that lost its job (it stalled and another worker reclaimed it) can no longer change it.
"""

# Shared prelude: acknowledge and delete a stream entry, so XLEN counts only live jobs.
_ACK_DEL = """
local function ack_del(stream, group, entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end
local function expire_job(job, events, ttl)
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', events, ttl)
end
"""

#: KEYS: stream, job, idempotency, events.
#: ARGV: job id, backlog limit, idempotency ttl, now, request json, max attempts, has idempotency,
#: queued event json.
#: Returns {'existing', job id} | {'full', depth} | {'created', entry id}.
SUBMIT = """
if ARGV[7] == '1' then
  local existing = redis.call('GET', KEYS[3])
  if existing then return {'existing', existing} end
end
local depth = redis.call('XLEN', KEYS[1])
if depth >= tonumber(ARGV[2]) then return {'full', tostring(depth)} end
local entry = redis.call('XADD', KEYS[1], '*', 'job', ARGV[1])
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'status', 'queued', 'attempt', 0,
  'max_attempts', ARGV[6], 'step', 0, 'total', 0, 'created_at', ARGV[4],
  'enqueued_at', ARGV[4], 'request', ARGV[5], 'entry', entry)
if ARGV[7] == '1' then redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[3]) end
redis.call('XADD', KEYS[4], '*', 'type', 'status', 'data', ARGV[8])
return {'created', entry}
"""

#: KEYS: stream, job, dead letters, events, metrics.
#: ARGV: group, entry, consumer, now, ttl, job id.
#: Returns {'run', attempt, enqueued_at} | {'skip', reason} | {'dead', attempts}.
START = (
    _ACK_DEL
    + """
local job = redis.call('HMGET', KEYS[2], 'status', 'attempt', 'max_attempts', 'cancel', 'entry',
  'enqueued_at')
local status = job[1]
if not status then ack_del(KEYS[1], ARGV[1], ARGV[2]); return {'skip', 'missing'} end
if job[5] ~= ARGV[2] then ack_del(KEYS[1], ARGV[1], ARGV[2]); return {'skip', 'stale'} end
if status == 'succeeded' or status == 'failed' or status == 'canceled' then
  ack_del(KEYS[1], ARGV[1], ARGV[2]); return {'skip', status}
end
if job[4] == '1' then
  redis.call('HSET', KEYS[2], 'status', 'canceled', 'finished_at', ARGV[4])
  redis.call('XADD', KEYS[4], '*', 'type', 'status', 'data',
    cjson.encode({status = 'canceled', attempt = tonumber(job[2])}))
  ack_del(KEYS[1], ARGV[1], ARGV[2]); expire_job(KEYS[2], KEYS[4], ARGV[5])
  return {'skip', 'canceled'}
end
local previous = tonumber(job[2])
if status == 'running' then redis.call('HINCRBY', KEYS[5], 'redeliveries', 1) end
if previous >= tonumber(job[3]) then
  local message = 'gave up after ' .. previous .. ' attempts'
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[6], 'attempts', previous, 'reason', message)
  redis.call('HSET', KEYS[2], 'status', 'failed', 'finished_at', ARGV[4],
    'error_code', 'attempts_exhausted', 'error_message', message)
  redis.call('XADD', KEYS[4], '*', 'type', 'status', 'data',
    cjson.encode({status = 'failed', attempt = previous, error = {code = 'attempts_exhausted',
      message = message}}))
  ack_del(KEYS[1], ARGV[1], ARGV[2]); expire_job(KEYS[2], KEYS[4], ARGV[5])
  return {'dead', tostring(previous)}
end
local attempt = previous + 1
redis.call('HSET', KEYS[2], 'status', 'running', 'attempt', attempt, 'worker', ARGV[3],
  'started_at', ARGV[4], 'step', 0, 'total', 0)
redis.call('XADD', KEYS[4], '*', 'type', 'status', 'data',
  cjson.encode({status = 'running', attempt = attempt}))
return {'run', tostring(attempt), job[6] or ''}
"""
)

#: KEYS: job, events. ARGV: attempt, step, total, event json.
#: Returns 'ok' | 'cancel' | 'fenced'.
PROGRESS = """
local job = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'cancel')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then return 'fenced' end
redis.call('HSET', KEYS[1], 'step', ARGV[2], 'total', ARGV[3])
redis.call('XADD', KEYS[2], '*', 'type', 'progress', 'data', ARGV[4])
if job[3] == '1' then return 'cancel' end
return 'ok'
"""

#: KEYS: stream, job. ARGV: group, consumer, entry, attempt.
#: Claims the worker's own entry again, which resets its idle time. Returns 1, or 0 when fenced.
HEARTBEAT = """
local job = redis.call('HMGET', KEYS[2], 'status', 'attempt')
if job[1] ~= 'running' or job[2] ~= ARGV[4] then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'JUSTID')
return 1
"""

#: KEYS: stream, job, events, dead letters.
#: ARGV: group, entry, attempt, final status, now, ttl, event json, dead-letter flag, job id,
#: then field/value pairs to set.
#: Returns 1, or 0 when fenced.
FINISH = (
    _ACK_DEL
    + """
local job = redis.call('HMGET', KEYS[2], 'status', 'attempt')
if job[1] ~= 'running' or job[2] ~= ARGV[3] then return 0 end
redis.call('HSET', KEYS[2], 'status', ARGV[4], 'finished_at', ARGV[5])
for i = 10, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
if ARGV[8] == '1' then
  redis.call('XADD', KEYS[4], '*', 'job', ARGV[9], 'attempts', ARGV[3], 'reason',
    redis.call('HGET', KEYS[2], 'error_message') or '')
end
redis.call('XADD', KEYS[3], '*', 'type', 'status', 'data', ARGV[7])
ack_del(KEYS[1], ARGV[1], ARGV[2]); expire_job(KEYS[2], KEYS[3], ARGV[6])
return 1
"""
)

#: KEYS: stream, job, events.
#: ARGV: group, entry, attempt, now, refund flag, event json, job id, error code, error message.
#: Puts a running job back in the queue as a new entry. Returns the new entry id, or '' if fenced.
REQUEUE = (
    _ACK_DEL
    + """
local job = redis.call('HMGET', KEYS[2], 'status', 'attempt')
if job[1] ~= 'running' or job[2] ~= ARGV[3] then return '' end
local entry = redis.call('XADD', KEYS[1], '*', 'job', ARGV[7])
redis.call('HSET', KEYS[2], 'status', 'queued', 'entry', entry, 'enqueued_at', ARGV[4],
  'worker', '', 'error_code', ARGV[8], 'error_message', ARGV[9])
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[2], 'attempt', -1) end
redis.call('XADD', KEYS[3], '*', 'type', 'status', 'data', ARGV[6])
ack_del(KEYS[1], ARGV[1], ARGV[2])
return entry
"""
)

#: KEYS: stream, job, events. ARGV: now, ttl, canceled event json.
#: Returns 'missing' | 'canceled' (was queued) | 'requested' (running) | the final status.
CANCEL = """
local job = redis.call('HMGET', KEYS[2], 'status', 'entry')
local status = job[1]
if not status then return 'missing' end
if status == 'queued' then
  redis.call('HSET', KEYS[2], 'status', 'canceled', 'cancel', '1', 'finished_at', ARGV[1])
  redis.call('XDEL', KEYS[1], job[2])
  redis.call('XADD', KEYS[3], '*', 'type', 'status', 'data', ARGV[3])
  redis.call('EXPIRE', KEYS[2], ARGV[2])
  redis.call('EXPIRE', KEYS[3], ARGV[2])
  return 'canceled'
end
if status == 'running' then
  redis.call('HSET', KEYS[2], 'cancel', '1')
  return 'requested'
end
return status
"""
