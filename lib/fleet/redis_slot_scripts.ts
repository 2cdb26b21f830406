/**
 * The Lua scripts of the shared heavy slot. Each runs atomically in Redis, reads Redis's own clock, drops
 * waiters whose replica stopped renewing them, and publishes the slot's new state on its channel.
 *
 * Keys of one slot (KEYS[1..4]): `<prefix>:holder` (the holder's member, PX = hold lease),
 * `<prefix>:queue` (sorted set: member → ticket, the FIFO order), `<prefix>:alive` (sorted set: member →
 * deadline in ms, renewed by heartbeats), `<prefix>:ticket` (INCR counter). A member is
 * `<ticket>:<random>`: the fencing token a holder must present to release or renew.
 * Replies end with `busy` (0/1) and `queue_depth`, which refresh every replica's local view.
 */
import { redisScript } from "./redis_connection.ts";

const COMMON = `
local holder_key, queue_key, alive_key, ticket_key, channel = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5]
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local dead = redis.call('ZRANGEBYSCORE', alive_key, '-inf', now)
for _, m in ipairs(dead) do redis.call('ZREM', queue_key, m) end
if #dead > 0 then redis.call('ZREMRANGEBYSCORE', alive_key, '-inf', now) end
local function publish()
  redis.call('PUBLISH', channel, redis.call('EXISTS', holder_key) .. ' ' .. redis.call('ZCARD', queue_key))
end
local function state()
  return { redis.call('EXISTS', holder_key), redis.call('ZCARD', queue_key) }
end
local function reply(status, member, n)
  local s = state()
  return { status, member, n, s[1], s[2] }
end
`;

/**
 * ENTER(random, hold_ms, max_queue): takes a ticket; grants the slot when it is free and nobody waits,
 * refuses ("full") when `max_queue` waiters wait already, queues otherwise.
 * Reply: [status, member, depth_at_entry, busy, queue_depth].
 */
export const ENTER = redisScript(`${COMMON}
local ticket = redis.call('INCR', ticket_key)
local member = ticket .. ':' .. ARGV[1]
local hold_ms = tonumber(ARGV[2])
local depth = redis.call('ZCARD', queue_key)
if redis.call('EXISTS', holder_key) == 0 and depth == 0 then
  redis.call('SET', holder_key, member, 'PX', hold_ms)
  publish()
  return reply('granted', member, 0)
end
if depth >= tonumber(ARGV[3]) then return reply('full', member, depth) end
redis.call('ZADD', queue_key, ticket, member)
redis.call('ZADD', alive_key, now + hold_ms, member)
publish()
return reply('queued', member, depth)
`);

/**
 * CLAIM(member, hold_ms): grants the slot to `member` when it is free and `member` heads the queue.
 * A member dropped from the queue (its heartbeats stopped reaching Redis, or Redis restarted) rejoins
 * at its ticket's place. Reply: [status, member, holder_pttl_ms, busy, queue_depth].
 */
export const CLAIM = redisScript(`${COMMON}
local member, hold_ms = ARGV[1], tonumber(ARGV[2])
local holder = redis.call('GET', holder_key)
if holder == member then return reply('granted', member, 0) end
if not redis.call('ZSCORE', queue_key, member) then
  redis.call('ZADD', queue_key, tonumber(string.match(member, '^(%d+):')), member)
  redis.call('ZADD', alive_key, now + hold_ms, member)
end
if not holder and redis.call('ZRANGE', queue_key, 0, 0)[1] == member then
  redis.call('SET', holder_key, member, 'PX', hold_ms)
  redis.call('ZREM', queue_key, member)
  redis.call('ZREM', alive_key, member)
  publish()
  return reply('granted', member, 0)
end
return reply('waiting', member, redis.call('PTTL', holder_key))
`);

/** LEAVE(member): removes a waiter that timed out or was aborted. Reply: [status, member, 0, busy, depth]. */
export const LEAVE = redisScript(`${COMMON}
local removed = redis.call('ZREM', queue_key, ARGV[1])
redis.call('ZREM', alive_key, ARGV[1])
if removed > 0 then publish() end
return reply('left', ARGV[1], removed)
`);

/**
 * RELEASE(member): frees the slot only when `member` still holds it (fencing: a holder whose lease
 * expired cannot free a later holder's slot). Reply: [status, member, 1 when freed, busy, queue_depth].
 */
export const RELEASE = redisScript(`${COMMON}
if redis.call('GET', holder_key) == ARGV[1] then
  redis.call('DEL', holder_key)
  publish()
  return reply('released', ARGV[1], 1)
end
return reply('stale', ARGV[1], 0)
`);

/**
 * HEARTBEAT(hold_ms, holder_member_or_empty, waiter_members...): renews this replica's hold (only while
 * it is still the holder) and its waiters' deadlines. Reply: [status, holder_member, holder_pttl_ms,
 * busy, queue_depth] where status is 'lost' when the given holder no longer holds the slot.
 */
export const HEARTBEAT = redisScript(`${COMMON}
local hold_ms, mine = tonumber(ARGV[1]), ARGV[2]
local status = 'ok'
if mine ~= '' then
  if redis.call('GET', holder_key) == mine then
    redis.call('PEXPIRE', holder_key, hold_ms)
  else
    status = 'lost'
  end
end
for i = 3, #ARGV do redis.call('ZADD', alive_key, 'XX', now + hold_ms, ARGV[i]) end
return reply(status, mine, redis.call('PTTL', holder_key))
`);
