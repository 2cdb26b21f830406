/**
 * The shared heavy slot against a real redis-server, with two slot instances on two connections standing
 * for two replicas: one holder across both, FIFO order across both, fencing (an expired holder's release
 * frees nothing), wait timeout, abort, queue full, spill/refuse policies, a killed holder process whose
 * hold expires in the documented time, and SLOT_UNAVAILABLE while Redis is down.
 */
import assert from "node:assert/strict";
import {
  parseRedisUrl,
  RedisConnection,
  RedisHeavySlot,
  type RedisSlotOptions,
} from "../../lib/fleet/redis.ts";
import { SlotError, type SlotLease, type SlotPolicy } from "../../lib/slot/mod.ts";
import { redisAvailable, type RedisServer, startRedisServer } from "./redis_server.ts";
import { waitFor } from "./poll.ts";

const ignore = !redisAvailable();

const WAIT: SlotPolicy = { when_busy: "wait", max_queue: 16, max_wait_ms: 20_000, retry_after_s: 1 };

interface Replicas {
  server: RedisServer;
  a: RedisHeavySlot;
  b: RedisHeavySlot;
  connections: RedisConnection[];
  host: string;
  close(): Promise<void>;
}

/** Two slot instances of one fresh host (its own keys) on two connections. */
async function replicas(
  server: RedisServer,
  policy: SlotPolicy = WAIT,
  options: RedisSlotOptions = {},
): Promise<Replicas> {
  const host = `http://gpu-${crypto.randomUUID().slice(0, 8)}:11434`;
  const connections = [
    await RedisConnection.connect(parseRedisUrl(server.url), () => {}),
    await RedisConnection.connect(parseRedisUrl(server.url), () => {}),
  ];
  const a = await RedisHeavySlot.open(connections[0], host, policy, options);
  const b = await RedisHeavySlot.open(connections[1], host, policy, options);
  return {
    server,
    a,
    b,
    connections,
    host,
    async close() {
      await a.close();
      await b.close();
      for (const c of connections) await c.close();
    },
  };
}

function slotCode(code: string) {
  return (error: unknown) => error instanceof SlotError && error.code === code;
}

Deno.test({
  name: "shared heavy slot across two replicas",
  ignore,
  async fn(t) {
    const server = await startRedisServer();
    try {
      await t.step("one holder across both; waiters on both get it in FIFO order", async () => {
        const r = await replicas(server);
        try {
          const first = await r.a.acquire();
          assert.equal(first.queued, false);
          assert.equal(first.queueDepthAtEntry, 0);
          await waitFor("both views see the holder", () => r.a.snapshot().busy && r.b.snapshot().busy);
          const order: number[] = [];
          const leases: Promise<SlotLease>[] = [];
          for (let i = 0; i < 6; i++) {
            const slot = i % 2 === 0 ? r.b : r.a;
            leases.push(
              slot.acquire().then((lease) => {
                order.push(i);
                return lease;
              }),
            );
            // Each enters before the next, so tickets follow i.
            await waitFor(`waiter ${i} queued`, () => r.a.snapshot().queue_depth === i + 1);
          }
          await waitFor("replica b sees six waiters", () => r.b.snapshot().queue_depth === 6);
          first.release();
          for (let i = 0; i < 6; i++) {
            const lease = await leases[i];
            assert.deepEqual(order, Array.from({ length: i + 1 }, (_, k) => k), "granted in ticket order");
            assert.equal(lease.queued, true);
            assert.equal(lease.queueDepthAtEntry, i);
            lease.release();
          }
          await waitFor("the slot is free everywhere", () => !r.a.snapshot().busy && !r.b.snapshot().busy);
          assert.equal(r.a.snapshot().queue_depth, 0);
          assert.equal(r.a.stats().acquired_immediately + r.b.stats().acquired_immediately, 1);
          assert.equal(r.a.stats().acquired_after_wait + r.b.stats().acquired_after_wait, 6);
        } finally {
          await r.close();
        }
      });

      await t.step("each Ollama host has its own shared slot", async () => {
        const one = await replicas(server);
        const connection = await RedisConnection.connect(parseRedisUrl(server.url), () => {});
        const otherHost = await RedisHeavySlot.open(connection, `${one.host}-other`, WAIT);
        try {
          const held = await one.a.acquire();
          const elsewhere = await otherHost.acquire({ maxWaitMs: 1_000 });
          assert.equal(elsewhere.queued, false, "a busy host's slot held up another host's");
          elsewhere.release();
          held.release();
        } finally {
          await otherHost.close();
          await connection.close();
          await one.close();
        }
      });

      await t.step("fencing: a holder whose lease expired cannot free the next holder's slot", async () => {
        // Replica a never renews (its heartbeat is an hour away), as if its process had stalled.
        const r = await replicas(server, WAIT, { holdMs: 300, heartbeatMs: 3_600_000 });
        try {
          const stale = await r.a.acquire();
          const next = await r.b.acquire({ maxWaitMs: 5_000 });
          assert.equal(next.queued, true, "b waited for a's hold to expire");
          stale.release();
          // The release reached Redis and did nothing: b still holds, and a newcomer must queue.
          await assert.rejects(r.a.acquire({ maxWaitMs: 200 }), slotCode("SLOT_WAIT_TIMEOUT"));
          assert.equal(r.a.snapshot().busy, true);
          next.release();
          await waitFor("a sees the slot free", () => !r.a.snapshot().busy);
          const after = await r.a.acquire({ maxWaitMs: 1_000 });
          assert.equal(after.queued, false);
          after.release();
        } finally {
          await r.close();
        }
      });

      await t.step("timeout, abort and a full queue leave no waiter behind", async () => {
        const r = await replicas(server, { ...WAIT, max_queue: 2 });
        try {
          const holder = await r.a.acquire();
          await assert.rejects(r.b.acquire({ maxWaitMs: 100 }), slotCode("SLOT_WAIT_TIMEOUT"));
          await waitFor("the timed-out waiter left", () => r.a.snapshot().queue_depth === 0);
          const controller = new AbortController();
          const aborted = r.b.acquire({ signal: controller.signal });
          await waitFor("a waiter queued", () => r.b.snapshot().queue_depth === 1);
          controller.abort();
          await assert.rejects(aborted, slotCode("SLOT_ABORTED"));
          await waitFor("the aborted waiter left", () => r.a.snapshot().queue_depth === 0);
          const w1 = r.a.acquire();
          const w2 = r.b.acquire();
          await waitFor("two waiters queued", () => r.a.snapshot().queue_depth === 2);
          await assert.rejects(r.b.acquire(), slotCode("SLOT_QUEUE_FULL"));
          holder.release();
          (await w1).release();
          (await w2).release();
          assert.equal(r.b.stats().wait_timeouts, 1);
          assert.equal(r.b.stats().wait_aborts, 1);
          assert.equal(r.b.stats().queue_full_refusals, 1);
        } finally {
          await r.close();
        }
      });

      await t.step("a request that must not queue (spill, refuse) is SLOT_QUEUE_FULL at once", async () => {
        const r = await replicas(server);
        try {
          const holder = await r.a.acquire();
          const started = Date.now();
          await assert.rejects(r.b.acquire({ queue: false }), slotCode("SLOT_QUEUE_FULL"));
          assert.ok(Date.now() - started < 1_000, "it did not wait");
          assert.equal(r.b.snapshot().queue_depth, 0);
          holder.release();
          await waitFor("b sees the slot free", () => !r.b.snapshot().busy);
          (await r.b.acquire({ queue: false })).release();
        } finally {
          await r.close();
        }
      });

      await t.step("a holder process killed with SIGKILL loses the slot within its hold lease", async () => {
        const holdMs = 1_500;
        const r = await replicas(server);
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-all",
            new URL("./slot_holder_child.ts", import.meta.url).pathname,
            server.url,
            r.host,
            String(holdMs),
          ],
          stdout: "piped",
          stderr: "inherit",
          stdin: "null",
        }).spawn();
        try {
          const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
          let out = "";
          while (!out.includes("held")) {
            const { value, done } = await reader.read();
            if (done) throw new Error("the holder process ended before holding the slot");
            out += value;
          }
          reader.releaseLock();
          // Renewals keep the hold past its lease while the process lives.
          await assert.rejects(r.a.acquire({ maxWaitMs: holdMs * 2 }), slotCode("SLOT_WAIT_TIMEOUT"));
          const waiting = r.a.acquire({ maxWaitMs: 20_000 });
          await waitFor("a waiter queued", () => r.a.snapshot().queue_depth === 1);
          child.kill("SIGKILL");
          const killedAt = Date.now();
          await child.status;
          const lease = await waiting;
          const took = Date.now() - killedAt;
          assert.ok(
            took <= holdMs + 500,
            `the waiter got the slot ${took} ms after the kill (hold lease ${holdMs} ms)`,
          );
          lease.release();
        } finally {
          try {
            child.kill("SIGKILL");
          } catch { /* already gone */ }
          await child.stdout.cancel().catch(() => {});
          await child.status;
          await r.close();
        }
      });

      await t.step(
        "with Redis down acquire is SLOT_UNAVAILABLE; after it is back the slot works",
        async () => {
          // Polls far apart (and a long hold lease), so a prompt wake-up can only come from pub/sub.
          const r = await replicas(server, WAIT, { pollMs: 60_000, holdMs: 30_000 });
          try {
            await server.stop();
            await assert.rejects(r.a.acquire(), slotCode("SLOT_UNAVAILABLE"));
            await server.start();
            await waitFor("the slot works again", async () => {
              const lease = await r.a.acquire({ maxWaitMs: 100 }).catch(() => null);
              lease?.release();
              return lease !== null;
            });
            // The subscriber reconnected and resubscribed: a release wakes the other replica's waiter.
            await waitFor("a sees the slot free", () => !r.a.snapshot().busy);
            const holder = await r.a.acquire();
            const waiting = r.b.acquire();
            await waitFor("b's waiter queued", () => r.a.snapshot().queue_depth === 1);
            const releasedAt = Date.now();
            holder.release();
            (await waiting).release();
            const took = Date.now() - releasedAt;
            assert.ok(took < 2_000, `b was woken ${took} ms after the release`);
          } finally {
            await r.close();
          }
        },
      );
    } finally {
      await server.close();
    }
  },
});
