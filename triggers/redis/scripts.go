package redis

import (
	"strconv"

	goredis "github.com/redis/go-redis/v9"
)

// The driver's state changes are Lua scripts: each runs atomically on the
// server, so no other client sees a half-made change (a message both in
// the stream and in the delayed set, a poison copy without the original
// removed), and a client that dies mid-way leaves nothing to repair.
// Time is the server's (TIME), never the client's.

// The Lua helpers, each prepended only to the scripts that use it (a
// script makes its helpers anew on every call).
//
// held reports whether entry id is pending for consumer with exactly n
// deliveries: a token that changes with every delivery (XREADGROUP,
// XAUTOCLAIM and XCLAIM without JUSTID each add one), so a delivery that
// was taken over, even by this same consumer, is told apart from the
// current one.
//
// encode/decode turn a list of strings into one binary-safe string (the
// prefix "jh1;" and length-prefixed items) for the delayed set.
const (
	luaNow = `
local function now_ms()
  local t = redis.call('TIME')
  return tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
`
	luaHeld = `
local function held(stream, group, id, consumer, n)
  local p = redis.pcall('XPENDING', stream, group, id, id, 1)
  if type(p) == 'table' and p.err then
    if string.sub(p.err, 1, 7) == 'NOGROUP' then return false end
    error(p.err)
  end
  if #p == 0 then return false end
  return p[1][2] == consumer and tonumber(p[1][4]) == tonumber(n)
end
`
	luaEncode = `
local function encode(list)
  local parts = {'jh1;'}
  for i = 1, #list do parts[#parts + 1] = #list[i] .. ':' .. list[i] end
  return table.concat(parts)
end
`
	luaDecode = `
local function decode(s)
  if string.sub(s, 1, 4) ~= 'jh1;' then return nil end
  local out, pos, len = {}, 5, #s
  while pos <= len do
    local c = string.find(s, ':', pos, true)
    if not c then return nil end
    local n = tonumber(string.sub(s, pos, c - 1))
    if not n or n < 0 or c + n > len then return nil end
    out[#out + 1] = string.sub(s, c + 1, c + n)
    pos = c + n + 1
  end
  if #out < 3 or #out % 2 ~= 1 then return nil end
  return out
end
`
	luaEntry = `
-- entry returns the fields of stream entry id without the driver's
-- bookkeeping fields, and the attempt count and message id they held; nil
-- when the entry is gone.
local function entry(stream, id)
  local r = redis.call('XRANGE', stream, id, id)
  if #r == 0 then return nil end
  local f, out, attempt, mid = r[1][2], {}, 0, id
  for i = 1, #f, 2 do
    local k, v = f[i], f[i + 1]
    if k == 'jobhost-attempt' then
      attempt = tonumber(v) or 0
    elseif k == 'jobhost-id' then
      mid = v
    else
      out[#out + 1] = k
      out[#out + 1] = v
    end
  end
  return out, attempt, mid
end
`
	luaAppend = `
local function append(t, ...)
  for _, v in ipairs({...}) do t[#t + 1] = v end
  return t
end
`
)

// receiveScript delivers up to count messages to the consumer: first
// entries whose lease ran out (XAUTOCLAIM with min-idle = the horizon),
// then, after moving due entries of the delayed set into the stream (at
// most ARGV[7]), new entries (XREADGROUP >). Every entry delivered gets
// its lease as an idle time of horizon - lease (XCLAIM IDLE JUSTID, which
// does not count a delivery), so XAUTOCLAIM takes it over exactly when the
// lease has run out, whatever lease each message was given.
//
// KEYS: stream, delayed set, poison stream.
// ARGV: group, consumer, count, horizon ms, idle ms (horizon - lease),
// XAUTOCLAIM cursor, promote limit, body field.
//
// Reply: {"nogroup"}, or {"ok", next cursor, entries, last stream id,
// next due (ms, -1 if none), now (ms)} with entries {id, deliveries,
// fields}.
var receiveScript = goredis.NewScript(luaNow + luaDecode + luaAppend + `
local stream, delayed, poison = KEYS[1], KEYS[2], KEYS[3]
local group, consumer = ARGV[1], ARGV[2]
local count = tonumber(ARGV[3])
local horizon, idle, cursor = ARGV[4], ARGV[5], ARGV[6]
local plimit, field = tonumber(ARGV[7]), ARGV[8]

local r = redis.pcall('XAUTOCLAIM', stream, group, consumer, horizon, cursor, 'COUNT', count)
if type(r) == 'table' and r.err then
  if string.sub(r.err, 1, 7) == 'NOGROUP' then return {'nogroup'} end
  return r
end
local now = now_ms()
local out, ids = {}, {}
for _, e in ipairs(r[2]) do
  if e[2] then
    local p = redis.call('XPENDING', stream, group, e[1], e[1], 1)
    out[#out + 1] = {e[1], p[1][4], e[2]}
    ids[#ids + 1] = e[1]
  else
    -- deleted from the stream (Redis 6.2 still claims it): forget it
    redis.call('XACK', stream, group, e[1])
  end
end

local due = redis.call('ZRANGE', delayed, '-inf', now, 'BYSCORE', 'LIMIT', 0, plimit)
for _, m in ipairs(due) do
  redis.call('ZREM', delayed, m)
  local f = decode(m)
  if f then
    local args = {'XADD', stream, '*'}
    for i = 2, #f do args[#args + 1] = f[i] end
    redis.call(unpack(args))
  else
    redis.call('XADD', poison, '*', field, m, 'jobhost-reason', 'malformed entry in ' .. delayed, 'jobhost-source', stream)
  end
end

if #out < count then
  local n = redis.call('XREADGROUP', 'GROUP', group, consumer, 'COUNT', count - #out, 'STREAMS', stream, '>')
  if n then
    for _, e in ipairs(n[1][2]) do
      out[#out + 1] = {e[1], 1, e[2]}
      ids[#ids + 1] = e[1]
    end
  end
end

if #ids > 0 then
  local args = {'XCLAIM', stream, group, consumer, 0}
  for _, id in ipairs(ids) do args[#args + 1] = id end
  append(args, 'IDLE', idle, 'JUSTID')
  redis.call(unpack(args))
end

local last = '0-0'
if #out == 0 then
  local l = redis.call('XREVRANGE', stream, '+', '-', 'COUNT', 1)
  if #l > 0 then last = l[1][1] end
end
local nd = redis.call('ZRANGE', delayed, 0, 0, 'WITHSCORES')
local next_due = -1
if #nd > 0 then next_due = math.floor(tonumber(nd[2])) end
return {'ok', r[1], out, last, next_due, now}
`)

// completeScript acknowledges and deletes a held entry.
// KEYS: stream. ARGV: group, consumer, id, deliveries.
// Reply: 1, or 0 when the entry is not held.
var completeScript = goredis.NewScript(luaHeld + `
if not held(KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4]) then return 0 end
redis.call('XACK', KEYS[1], ARGV[1], ARGV[3])
redis.call('XDEL', KEYS[1], ARGV[3])
return 1
`)

// extendScript sets a held entry's idle time to horizon - lease (JUSTID:
// not a delivery).
// KEYS: stream. ARGV: group, consumer, id, deliveries, idle ms.
// Reply: 1, or 0 when the entry is not held.
var extendScript = goredis.NewScript(luaHeld + `
if not held(KEYS[1], ARGV[1], ARGV[3], ARGV[2], ARGV[4]) then return 0 end
redis.call('XCLAIM', KEYS[1], ARGV[1], ARGV[2], 0, ARGV[3], 'IDLE', ARGV[5], 'JUSTID')
return 1
`)

// requeueScript gives a held entry back: its fields, with jobhost-id (the
// message id) and jobhost-attempt (the attempts so far: the entry's own
// plus its deliveries, less ARGV[6]), go back to the stream at once
// (delay 0) or into the delayed set scored by the server time it is due,
// and the entry is acknowledged and deleted. Retry deducts nothing,
// Release one (its delivery does not count).
// KEYS: stream, delayed set. ARGV: group, consumer, id, deliveries, delay
// ms, deduct.
// Reply: the new entry id (delay 0), "delayed", or 0 when the entry is not
// held, -1 when it is held but was deleted from the stream (it is then
// acknowledged).
var requeueScript = goredis.NewScript(luaNow + luaHeld + luaEncode + luaEntry + luaAppend + `
local stream, delayed = KEYS[1], KEYS[2]
local group, consumer, id = ARGV[1], ARGV[2], ARGV[3]
local n, delay, deduct = tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6])
if not held(stream, group, id, consumer, n) then return 0 end
local f, attempt, mid = entry(stream, id)
if not f then
  redis.call('XACK', stream, group, id)
  return -1
end
append(f, 'jobhost-id', mid)
local total = attempt + n - deduct
if total > 0 then append(f, 'jobhost-attempt', tostring(total)) end
local res = 'delayed'
if delay <= 0 then
  local args = {'XADD', stream, '*'}
  for _, v in ipairs(f) do args[#args + 1] = v end
  res = redis.call(unpack(args))
else
  local list = {id}
  for _, v in ipairs(f) do list[#list + 1] = v end
  redis.call('ZADD', delayed, now_ms() + delay, encode(list))
end
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
return res
`)

// deadLetterScript copies a held entry to the poison stream (its fields
// without bookkeeping, plus the reason, the source stream, the message id
// and the delivery count) and then acknowledges and deletes it, in one
// step.
// KEYS: stream, poison stream. ARGV: group, consumer, id, deliveries,
// reason.
// Reply: the poison entry's id, or 0 when the entry is not held, -1 when
// it is held but was deleted from the stream (it is then acknowledged).
var deadLetterScript = goredis.NewScript(luaHeld + luaEntry + luaAppend + `
local stream, poison = KEYS[1], KEYS[2]
local group, consumer, id, n = ARGV[1], ARGV[2], ARGV[3], tonumber(ARGV[4])
if not held(stream, group, id, consumer, n) then return 0 end
local f, attempt, mid = entry(stream, id)
if not f then
  redis.call('XACK', stream, group, id)
  return -1
end
local args = {'XADD', poison, '*'}
for i = 1, #f, 2 do
  local k = f[i]
  if k ~= 'jobhost-reason' and k ~= 'jobhost-source' and k ~= 'jobhost-source-id' and k ~= 'jobhost-dequeue-count' then
    append(args, k, f[i + 1])
  end
end
append(args, 'jobhost-reason', ARGV[5], 'jobhost-source', stream, 'jobhost-source-id', mid, 'jobhost-dequeue-count', tostring(attempt + n))
local pid = redis.call(unpack(args))
redis.call('XACK', stream, group, id)
redis.call('XDEL', stream, id)
return pid
`)

// delayScript adds an encoded message to the delayed set, due ARGV[1] ms
// from the server's now.
// KEYS: delayed set. ARGV: delay ms, encoded message.
var delayScript = goredis.NewScript(luaNow + `
redis.call('ZADD', KEYS[1], now_ms() + tonumber(ARGV[1]), ARGV[2])
return 1
`)

// poisonRequeueScript moves poison entry ARGV[1] to the source stream:
// its fields without the jobhost-* bookkeeping are added to the stream,
// then the poison entry is deleted, in one step.
// KEYS: poison stream, source stream. ARGV: poison entry id.
// Reply: the new entry's id, or 0 when there is no such poison entry.
var poisonRequeueScript = goredis.NewScript(luaAppend + `
local r = redis.call('XRANGE', KEYS[1], ARGV[1], ARGV[1])
if #r == 0 then return 0 end
local f = r[1][2]
local args = {'XADD', KEYS[2], '*'}
for i = 1, #f, 2 do
  if string.sub(f[i], 1, 8) ~= 'jobhost-' then append(args, f[i], f[i + 1]) end
end
if #args == 3 then append(args, 'jobhost-requeued', '1') end
local id = redis.call(unpack(args))
redis.call('XDEL', KEYS[1], ARGV[1])
return id
`)

// sweepScript deletes consumers of the group that hold no pending entry:
// ARGV[2] itself (the closing driver's), or every one idle for more than
// ARGV[3] ms (those of drivers that ended without Close). A consumer with
// pending entries is never deleted: that would drop its entries from the
// pending list, and they would never be delivered again.
// KEYS: stream. ARGV: group, consumer ("" for none), max idle ms (0: no
// sweep of others).
// Reply: how many were deleted.
var sweepScript = goredis.NewScript(`
local c = redis.pcall('XINFO', 'CONSUMERS', KEYS[1], ARGV[1])
if type(c) == 'table' and c.err then return 0 end
local maxidle, deleted = tonumber(ARGV[3]), 0
for _, info in ipairs(c) do
  local m = {}
  for i = 1, #info, 2 do m[info[i]] = info[i + 1] end
  local idle = tonumber(m['inactive'] or m['idle'])
  if tonumber(m['pending']) == 0 and (m['name'] == ARGV[2] or (maxidle > 0 and idle and idle >= 0 and idle > maxidle)) then
    redis.call('XGROUP', 'DELCONSUMER', KEYS[1], ARGV[1], m['name'])
    deleted = deleted + 1
  end
end
return deleted
`)

// encodeDelayed is the Lua encode of the delayed set: the "jh1;" prefix
// and each item as <length>:<bytes>.
func encodeDelayed(items ...string) string {
	n := 4
	for _, s := range items {
		n += len(s) + 12
	}
	b := make([]byte, 0, n)
	b = append(b, "jh1;"...)
	for _, s := range items {
		b = strconv.AppendInt(b, int64(len(s)), 10)
		b = append(b, ':')
		b = append(b, s...)
	}
	return string(b)
}
