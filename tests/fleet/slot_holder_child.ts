/**
 * Child process for the shared-slot tests: takes the heavy slot of host `Deno.args[1]` in the Redis at
 * `Deno.args[0]` with a hold lease of `Deno.args[2]` ms, prints "held", and keeps it (renewing) until killed.
 */
import { parseRedisUrl, RedisConnection, RedisHeavySlot } from "../../lib/fleet/redis.ts";

const [url, host, holdMs] = Deno.args;
const redis = await RedisConnection.connect(parseRedisUrl(url), () => {});
const slot = await RedisHeavySlot.open(
  redis,
  host,
  { when_busy: "wait", max_queue: 8, max_wait_ms: 30_000, retry_after_s: 1 },
  { holdMs: Number(holdMs), heartbeatMs: Math.max(50, Math.floor(Number(holdMs) / 4)) },
);
await slot.acquire();
console.log("held");
// Keep the process (and its heartbeats) alive until the test kills it.
setInterval(() => {}, 60_000);
