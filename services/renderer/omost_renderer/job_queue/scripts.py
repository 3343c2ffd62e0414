"""Lua scripts that make every queue transition atomic, shared by the API and the workers.

Each transition of a job (submit, start, progress, heartbeat, finish, requeue, cancel) reads and
writes the job hash, the job stream and the job's event stream in one step. Writes by a worker are
fenced: they check that the job is still ``running`` under the worker's attempt number, so a
worker that lost its job (it stalled and another worker reclaimed it) can no longer change it.

Every entry of the job stream carries ``seq``, its logical number in the stream (Redis's own
``entries-added`` counter), which makes a queue position a subtraction instead of a range scan.
A job that ends keeps a small record (see ``settle``), for ``job_ttl_s`` or, when canceled,
``canceled_ttl_s``: its request is dropped from the hash, its
final event is copied into the hash, and its event stream (at least 4 kB, whatever it holds)
lingers only ``EVENTS_LINGER_S`` for clients still following it.

Under ``maxmemory`` with ``noeviction`` Redis refuses a script's first write that may grow memory,
before anything was written, so a script refused for memory changes nothing.
"""

from omost_renderer.job_queue import constants

# Shared prelude: acknowledge and delete a stream entry, so XLEN counts only live jobs; settle a
# final job; number stream entries.
_PRELUDE = (
    """
local function ack_del(stream, group, entry)
  redis.call('XACK', stream, group, entry)
  redis.call('XDEL', stream, entry)
end
local function settle(job, events, ttl)
  local state = redis.call('HMGET', job, 'status', 'canceled_ttl')
  if state[1] == 'canceled' and state[2] then ttl = state[2] end
  local last = redis.call('XREVRANGE', events, '+', '-', 'COUNT', 1)[1]
  if last then
    local fields = {}
    for i = 1, #last[2], 2 do fields[last[2][i]] = last[2][i + 1] end
    redis.call('HSET', job, 'final_event_id', last[1], 'final_event', fields['data'])
  end
  -- The request and the webhook (its last event is already in the webhook stream) go.
  redis.call('HDEL', job, 'request', 'webhook_url', 'webhook_events', 'webhook_every')
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', events, """
    + str(constants.EVENTS_LINGER_S)
    + """)
end
local WEBHOOK_STREAM_KEY = '"""
    + constants.WEBHOOK_STREAM_KEY
    + """'
-- A webhook event of the job, when its webhook asked for it: written in the same script as the
-- transition, so a delivery is never lost between the two. The stream's key is fixed (one Redis).
local function hook(job, name, data)
  local h = redis.call('HMGET', job, 'webhook_url', 'webhook_events', 'key_name', 'id')
  if not h[1] or h[1] == '' then return end
  if not string.find(h[2] or '', ',' .. name .. ',', 1, true) then return end
  redis.call('XADD', WEBHOOK_STREAM_KEY, '*', 'job', h[4], 'event', name,
    'data', data, 'url', h[1], 'key', h[3] or '', 'attempt', '1')
end
local function final_hook(job, status, data)
  local names = {succeeded = 'completed', failed = 'failed', canceled = 'canceled'}
  if names[status] then hook(job, names[status], data) end
end
local function next_seq(stream)
  if redis.call('EXISTS', stream) == 0 then return 1 end
  local info = redis.call('XINFO', 'STREAM', stream)
  for i = 1, #info, 2 do
    if info[i] == 'entries-added' then return tonumber(info[i + 1]) + 1 end
  end
  return 1
end
-- Fair scheduling (key names as constants.lane_key, backlog_key and backlogged_key build
-- them): a key has at most FAIR_SHARE queued jobs in the stream (its lane); the others
-- wait in its backlog and enter, oldest first, as the lane's jobs start or leave.
local OPEN_KEY_NAME = '"""
    + constants.OPEN_KEY_NAME
    + """'
local JOB_KEY_PREFIX = '"""
    + constants.JOB_KEY_PREFIX
    + """'
local FAIR_SHARE = """
    + str(constants.FAIR_SHARE)
    + """
local function laned(name)
  return name and name ~= '' and name ~= OPEN_KEY_NAME
end
local function promote(stream, name)
  local lane = stream .. ':lane:' .. name
  local backlog = stream .. ':backlog:' .. name
  -- Members no longer queued in the stream (ended, or lost) leave: the lane heals itself.
  for _, id in ipairs(redis.call('ZRANGE', lane, 0, -1)) do
    local state = redis.call('HMGET', JOB_KEY_PREFIX .. id, 'status', 'entry')
    if state[1] ~= 'queued' or not state[2] or state[2] == '' then redis.call('ZREM', lane, id) end
  end
  while redis.call('ZCARD', lane) < FAIR_SHARE do
    local id = redis.call('LPOP', backlog)
    if not id then break end
    redis.call('DECR', stream .. ':backlogged')
    local job = JOB_KEY_PREFIX .. id
    if redis.call('HGET', job, 'status') == 'queued' then
      local seq = next_seq(stream)
      local entry = redis.call('XADD', stream, '*', 'job', id, 'seq', seq)
      redis.call('HSET', job, 'entry', entry, 'seq', seq)
      redis.call('ZADD', lane, seq, id)
    end
  end
end
-- A queued job leaves its lane (it starts, or is canceled): the next of its key's backlog enters.
local function leave_lane(stream, job, id)
  local name = redis.call('HGET', job, 'key_name')
  if not laned(name) then return end
  redis.call('ZREM', stream .. ':lane:' .. name, id)
  promote(stream, name)
end
"""
)

_EVENTS_CAP = f"'MAXLEN', '~', {constants.EVENTS_MAXLEN}"

#: KEYS: stream, job, idempotency, events, job the idempotency key is believed to map to.
#: ARGV: job id, backlog limit, idempotency ttl, now, request json, max attempts, has idempotency,
#: queued event json, request digest, believed job id ('' when none), notes json, then
#: field/value pairs to set on the job (its webhook, its API key's name).
#: Returns {'created', entry id} | {'existing', job id} | {'reused', job id} (same key, another
#: request) | {'lookup', job id} (the key maps to this job: call again believing it) |
#: {'full', depth}.
SUBMIT = (
    _PRELUDE
    + """
if ARGV[7] == '1' then
  local stored = redis.call('GET', KEYS[3])
  if stored then
    local id, digest = string.match(stored, '^(%S+) ?(%S*)$')
    if id ~= ARGV[10] then return {'lookup', id} end
    if redis.call('EXISTS', KEYS[5]) == 1 then
      -- A key stored without a digest (before digests were kept) matches any request.
      if digest ~= '' and digest ~= ARGV[9] then return {'reused', id} end
      return {'existing', id}
    end
    -- The key's job has expired: the key is free again, as if it had never been used.
  end
end
local backlogged = KEYS[1] .. ':backlogged'
local depth = redis.call('XLEN', KEYS[1]) + tonumber(redis.call('GET', backlogged) or '0')
if depth >= tonumber(ARGV[2]) then return {'full', tostring(depth)} end
redis.call('HSET', KEYS[2], 'id', ARGV[1], 'status', 'queued', 'attempt', 0,
  'max_attempts', ARGV[6], 'step', 0, 'total', 0, 'created_at', ARGV[4],
  'enqueued_at', ARGV[4], 'request', ARGV[5], 'entry', '', 'seq', '', 'notes', ARGV[11])
for i = 12, #ARGV, 2 do redis.call('HSET', KEYS[2], ARGV[i], ARGV[i + 1]) end
local name = redis.call('HGET', KEYS[2], 'key_name')
local entry = ''
if laned(name) then
  -- Behind the key's own earlier jobs: its backlog, which `promote` feeds into the stream.
  redis.call('RPUSH', KEYS[1] .. ':backlog:' .. name, ARGV[1])
  redis.call('INCR', backlogged)
  promote(KEYS[1], name)
  entry = redis.call('HGET', KEYS[2], 'entry')
else
  local seq = next_seq(KEYS[1])
  entry = redis.call('XADD', KEYS[1], '*', 'job', ARGV[1], 'seq', seq)
  redis.call('HSET', KEYS[2], 'entry', entry, 'seq', seq)
end
if ARGV[7] == '1' then
  redis.call('SET', KEYS[3], ARGV[1] .. ' ' .. ARGV[9], 'EX', ARGV[3])
end
redis.call('XADD', KEYS[4], """
    + _EVENTS_CAP
    + """, '*', 'type', 'status', 'data', ARGV[8])
return {'created', entry}
"""
)

#: KEYS: stream, job, dead letters, events, metrics.
#: ARGV: group, entry, consumer, now, ttl, job id.
#: Returns {'run', attempt, enqueued_at, request} | {'skip', reason} | {'dead', attempts}.
START = (
    _PRELUDE
    + """
local job = redis.call('HMGET', KEYS[2], 'status', 'attempt', 'max_attempts', 'cancel', 'entry',
  'enqueued_at', 'request')
local status = job[1]
if not status then ack_del(KEYS[1], ARGV[1], ARGV[2]); return {'skip', 'missing'} end
if job[5] ~= ARGV[2] then ack_del(KEYS[1], ARGV[1], ARGV[2]); return {'skip', 'stale'} end
if status == 'succeeded' or status == 'failed' or status == 'canceled' then
  ack_del(KEYS[1], ARGV[1], ARGV[2]); return {'skip', status}
end
if status == 'queued' then leave_lane(KEYS[1], KEYS[2], ARGV[6]) end
if job[4] == '1' then
  redis.call('HSET', KEYS[2], 'status', 'canceled', 'finished_at', ARGV[4])
  local event = cjson.encode({status = 'canceled', attempt = tonumber(job[2])})
  redis.call('XADD', KEYS[4], '*', 'type', 'status', 'data', event)
  hook(KEYS[2], 'canceled', event)
  ack_del(KEYS[1], ARGV[1], ARGV[2]); settle(KEYS[2], KEYS[4], ARGV[5])
  return {'skip', 'canceled'}
end
local previous = tonumber(job[2])
if status == 'running' then redis.call('HINCRBY', KEYS[5], 'redeliveries', 1) end
if previous >= tonumber(job[3]) then
  local message = 'gave up after ' .. previous .. ' attempts'
  redis.call('XADD', KEYS[3], '*', 'job', ARGV[6], 'attempts', previous, 'reason', message)
  redis.call('HSET', KEYS[2], 'status', 'failed', 'finished_at', ARGV[4],
    'error_code', 'attempts_exhausted', 'error_message', message)
  local event = cjson.encode({status = 'failed', attempt = previous,
    error = {code = 'attempts_exhausted', message = message}})
  redis.call('XADD', KEYS[4], '*', 'type', 'status', 'data', event)
  hook(KEYS[2], 'failed', event)
  ack_del(KEYS[1], ARGV[1], ARGV[2]); settle(KEYS[2], KEYS[4], ARGV[5])
  return {'dead', tostring(previous)}
end
local attempt = previous + 1
redis.call('HSET', KEYS[2], 'status', 'running', 'attempt', attempt, 'worker', ARGV[3],
  'started_at', ARGV[4], 'step', 0, 'total', 0)
redis.call('XADD', KEYS[4], """
    + _EVENTS_CAP
    + """, '*', 'type', 'status', 'data', cjson.encode({status = 'running', attempt = attempt}))
hook(KEYS[2], 'started', cjson.encode({status = 'running', attempt = attempt}))
return {'run', tostring(attempt), job[6] or '', job[7] or '{}'}
"""
)

#: KEYS: job, events, previews. ARGV: attempt, step, total, event json, preview event json
#: ('' when the step has no preview), preview ttl.
#: The progress event (without the preview) is kept for resume; the preview goes to the job's
#: capped, short-lived preview stream. Returns 'ok' | 'cancel' | 'fenced'.
PROGRESS = (
    _PRELUDE
    + """
local job = redis.call('HMGET', KEYS[1], 'status', 'attempt', 'cancel', 'webhook_every')
if job[1] ~= 'running' or job[2] ~= ARGV[1] then return 'fenced' end
redis.call('HSET', KEYS[1], 'step', ARGV[2], 'total', ARGV[3])
redis.call('XADD', KEYS[2], """
    + _EVENTS_CAP
    + """, '*', 'type', 'progress', 'data', ARGV[4])
if ARGV[5] ~= '' then
  redis.call('XADD', KEYS[3], 'MAXLEN', """
    + str(constants.PREVIEWS_MAXLEN)
    + """, '*', 'type', 'progress', 'data', ARGV[5])
  redis.call('EXPIRE', KEYS[3], ARGV[6])
end
-- A progress webhook at most every `webhook_every` steps, and at the last step.
local every = tonumber(job[4] or '')
if every and (tonumber(ARGV[2]) % every == 0 or ARGV[2] == ARGV[3]) then
  hook(KEYS[1], 'progress', ARGV[4])
end
if job[3] == '1' then return 'cancel' end
return 'ok'
"""
)

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
    _PRELUDE
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
final_hook(KEYS[2], ARGV[4], ARGV[7])
ack_del(KEYS[1], ARGV[1], ARGV[2]); settle(KEYS[2], KEYS[3], ARGV[6])
return 1
"""
)

#: KEYS: stream, job, events.
#: ARGV: group, entry, attempt, now, refund flag, event json, job id, error code, error message.
#: Puts a running job back in the queue as a new entry. Returns the new entry id, or '' if fenced.
REQUEUE = (
    _PRELUDE
    + """
local job = redis.call('HMGET', KEYS[2], 'status', 'attempt')
if job[1] ~= 'running' or job[2] ~= ARGV[3] then return '' end
local seq = next_seq(KEYS[1])
local entry = redis.call('XADD', KEYS[1], '*', 'job', ARGV[7], 'seq', seq)
redis.call('HSET', KEYS[2], 'status', 'queued', 'entry', entry, 'seq', seq,
  'enqueued_at', ARGV[4], 'worker', '', 'error_code', ARGV[8], 'error_message', ARGV[9])
-- A retry goes back to the stream at once (not behind its key's backlog), inside its lane.
local name = redis.call('HGET', KEYS[2], 'key_name')
if laned(name) then redis.call('ZADD', KEYS[1] .. ':lane:' .. name, seq, ARGV[7]) end
if ARGV[5] == '1' then redis.call('HINCRBY', KEYS[2], 'attempt', -1) end
redis.call('XADD', KEYS[3], """
    + _EVENTS_CAP
    + """, '*', 'type', 'status', 'data', ARGV[6])
ack_del(KEYS[1], ARGV[1], ARGV[2])
return entry
"""
)

# Where the group's delivery stands: the sequence number of the oldest entry not yet delivered
# (nil when every entry was delivered) and the id of the last delivered one.
_FRONTIER = """
local function id_after(a, b)
  local a_ms, a_seq = string.match(a, '^(%d+)-(%d+)$')
  local b_ms, b_seq = string.match(b, '^(%d+)-(%d+)$')
  if tonumber(a_ms) ~= tonumber(b_ms) then return tonumber(a_ms) > tonumber(b_ms) end
  return tonumber(a_seq) > tonumber(b_seq)
end
local function frontier(stream, group)
  local last = '0-0'
  local groups = redis.pcall('XINFO', 'GROUPS', stream)
  if type(groups) == 'table' and not groups.err then
    for _, info in ipairs(groups) do
      local fields = {}
      for i = 1, #info, 2 do fields[info[i]] = info[i + 1] end
      if fields['name'] == group then last = fields['last-delivered-id'] end
    end
  end
  local first = redis.call('XRANGE', stream, '(' .. last, '+', 'COUNT', 1)
  if #first == 0 then return nil, last end
  local entry = first[1][2]
  for i = 1, #entry, 2 do
    if entry[i] == 'seq' then return tonumber(entry[i + 1]), last end
  end
  return nil, last
end
"""

#: KEYS: stream, job, events, canceled. ARGV: now, ttl, canceled event json, group, job id.
#: Returns 'missing' | 'canceled' (was queued) | 'requested' (running) | the final status.
CANCEL = (
    _PRELUDE
    + _FRONTIER
    + """
local job = redis.call('HMGET', KEYS[2], 'status', 'entry', 'seq')
local status = job[1]
if not status then return 'missing' end
if status == 'queued' and (not job[2] or job[2] == '') then
  -- Still in its key's backlog, outside the stream: it only leaves the backlog.
  local name = redis.call('HGET', KEYS[2], 'key_name') or ''
  if redis.call('LREM', KEYS[1] .. ':backlog:' .. name, 1, ARGV[5]) > 0 then
    redis.call('DECR', KEYS[1] .. ':backlogged')
  end
  redis.call('HSET', KEYS[2], 'status', 'canceled', 'cancel', '1', 'finished_at', ARGV[1])
  redis.call('XADD', KEYS[3], '*', 'type', 'status', 'data', ARGV[3])
  hook(KEYS[2], 'canceled', ARGV[3])
  settle(KEYS[2], KEYS[3], ARGV[2])
  return 'canceled'
end
if status == 'queued' then
  redis.call('HSET', KEYS[2], 'status', 'canceled', 'cancel', '1', 'finished_at', ARGV[1])
  redis.call('XDEL', KEYS[1], job[2])
  redis.call('XADD', KEYS[3], '*', 'type', 'status', 'data', ARGV[3])
  hook(KEYS[2], 'canceled', ARGV[3])
  leave_lane(KEYS[1], KEYS[2], ARGV[5])
  settle(KEYS[2], KEYS[3], ARGV[2])
  local oldest = frontier(KEYS[1], ARGV[4])
  if job[3] and (not oldest or tonumber(job[3]) > oldest) then
    redis.call('ZADD', KEYS[4], job[3], job[3])
  end
  -- Canceled entries behind the delivery frontier no longer change any position.
  if oldest then
    redis.call('ZREMRANGEBYSCORE', KEYS[4], '-inf', '(' .. oldest)
  else
    redis.call('DEL', KEYS[4])
  end
  return 'canceled'
end
if status == 'running' then
  -- The worker ends the job at its next step; the shorter TTL of a canceled job is kept for it.
  redis.call('HSET', KEYS[2], 'cancel', '1', 'canceled_ttl', ARGV[2])
  return 'requested'
end
return status
"""
)

#: KEYS: stream, job, canceled. ARGV: group, job id.
#: Returns how many queued entries are ahead of the job's entry (0: it is next), or -1 when the
#: job is not queued. Costs O(log n): the job's sequence number, minus that of the oldest entry
#: not yet delivered, minus the entries canceled in between.
POSITION = (
    _PRELUDE
    + _FRONTIER
    + """
local job = redis.call('HMGET', KEYS[2], 'status', 'entry', 'seq', 'key_name')
if job[1] ~= 'queued' or not job[2] then return -1 end
local oldest, last = frontier(KEYS[1], ARGV[1])
if job[2] == '' then
  -- In its key's backlog: every undelivered entry of the stream, then its key's older jobs
  -- (other keys' later jobs may still enter between them: a lower bound).
  local ahead = 0
  if oldest then
    local newest = next_seq(KEYS[1]) - 1
    ahead = newest - oldest + 1 - redis.call('ZCOUNT', KEYS[3], oldest, newest)
  end
  local index = redis.call('LPOS', KEYS[1] .. ':backlog:' .. (job[4] or ''), ARGV[2])
  return ahead + (index or 0)
end
if not id_after(job[2], last) then return 0 end
if not oldest or not job[3] then return 0 end
local mine = tonumber(job[3])
if mine <= oldest then return 0 end
local canceled = redis.call('ZCOUNT', KEYS[3], '(' .. oldest, '(' .. mine)
return mine - oldest - canceled
"""
)
