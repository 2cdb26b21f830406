/**
 * The Redis lease store against a real redis-server: one winner per lease id across connections (as
 * across replicas), only the sha256 of an id reaches Redis, the key expires with the lease, and an
 * unreachable Redis fails closed and recovers without reconnecting by hand.
 */
import assert from "node:assert/strict";
import { hashLeaseId, LeaseStoreUnavailableError } from "../../lib/authority/mod.ts";
import {
  LEASE_KEY_PREFIX,
  parseRedisUrl,
  RedisConnection,
  RedisLeaseReserver,
} from "../../lib/fleet/redis.ts";
import { redisAvailable, startRedisServer } from "./redis_server.ts";

const ignore = !redisAvailable();
const quiet = () => {};

Deno.test({
  name: "redis lease store: one winner among replicas, hashed keys, expiry, fail closed",
  ignore,
  async fn(t) {
    const password = `pw-${crypto.randomUUID()}`;
    const server = await startRedisServer({ password });
    const logs: string[] = [];
    const replicaA = await RedisConnection.connect(parseRedisUrl(server.url), (l) => logs.push(l));
    const replicaB = await RedisConnection.connect(parseRedisUrl(server.url), (l) => logs.push(l));
    const stores = [new RedisLeaseReserver(replicaA), new RedisLeaseReserver(replicaB)];
    try {
      await t.step(
        "twenty concurrent reservations of one id over two connections: exactly one wins",
        async () => {
          for (let round = 0; round < 5; round++) {
            const id = `lease-${crypto.randomUUID()}`;
            const now = Date.now();
            const verdicts = await Promise.all(
              Array.from({ length: 20 }, (_, i) => stores[i % 2].reserve(id, now + 60_000, now)),
            );
            assert.equal(verdicts.filter((v) => v === "reserved").length, 1, `round ${round}: ${verdicts}`);
            assert.equal(verdicts.filter((v) => v === "replay").length, 19);
          }
        },
      );

      await t.step("Redis holds the sha256 of the id, never the id, until the lease expires", async () => {
        const id = `lease-raw-${crypto.randomUUID()}`;
        const now = Date.now();
        assert.equal(await stores[0].reserve(id, now + 30_000, now), "reserved");
        const key = `${LEASE_KEY_PREFIX}${hashLeaseId(id)}`;
        assert.equal(await replicaA.command(["EXISTS", key]), 1);
        const ttl = Number(await replicaA.command(["PTTL", key]));
        assert.ok(ttl > 28_000 && ttl <= 30_000, `PTTL ${ttl} follows the lease lifetime`);
        const keys = await replicaA.command(["KEYS", "*"]) as string[];
        for (const k of keys) {
          assert.ok(!k.includes(id), "a raw lease id is a Redis key");
          const type = await replicaA.command(["TYPE", k]);
          if (type === "string") assert.ok(!String(await replicaA.command(["GET", k])).includes(id));
        }
        // A short lease frees its key when it expires (Redis's clock), as the file store forgets it.
        const short = `lease-short-${crypto.randomUUID()}`;
        const t0 = Date.now();
        assert.equal(await stores[1].reserve(short, t0 + 150, t0), "reserved");
        assert.equal(await stores[0].reserve(short, t0 + 150, t0), "replay");
        const shortKey = `${LEASE_KEY_PREFIX}${hashLeaseId(short)}`;
        const deadline = Date.now() + 5_000;
        while (await replicaA.command(["EXISTS", shortKey]) === 1) {
          assert.ok(Date.now() < deadline, "the lease key never expired");
          await new Promise((resolve) => setTimeout(resolve, 20));
        }
      });

      await t.step(
        "with Redis down a reservation fails closed at once; after it is back it works",
        async () => {
          await server.stop();
          const id = `lease-${crypto.randomUUID()}`;
          const started = Date.now();
          await assert.rejects(
            stores[0].reserve(id, Date.now() + 60_000, Date.now()),
            (error: unknown) => {
              assert.ok(error instanceof LeaseStoreUnavailableError);
              assert.match(error.message, /\(Redis at redis:\/\/127\.0\.0\.1:\d+\) could not be reached/);
              assert.ok(!error.message.includes(password), "the password is in the error");
              return true;
            },
          );
          assert.ok(Date.now() - started < 2_500, "the failure came within the command timeout");
          await server.start();
          const deadline = Date.now() + 10_000;
          let verdict: string | null = null;
          while (verdict === null) {
            verdict = await stores[0].reserve(id, Date.now() + 60_000, Date.now()).catch(() => null);
            if (verdict === null) {
              assert.ok(Date.now() < deadline, "the store did not recover after Redis came back");
              await new Promise((resolve) => setTimeout(resolve, 50));
            }
          }
          assert.equal(verdict, "reserved", "the failed attempt reserved nothing");
          assert.equal(await stores[1].reserve(id, Date.now() + 60_000, Date.now()), "replay");
          assert.ok(logs.some((l) => /unreachable/.test(l)) && logs.some((l) => /reachable again/.test(l)));
          for (const line of logs) assert.ok(!line.includes(password), "a log line holds the password");
        },
      );
    } finally {
      await replicaA.close();
      await replicaB.close();
      await server.close();
    }
  },
});

Deno.test({
  name: "redis lease store: an unreachable Redis at connect is one clear error without the password",
  ignore,
  async fn() {
    const server = await startRedisServer();
    const port = server.port;
    await server.close();
    await assert.rejects(
      RedisConnection.connect(parseRedisUrl(`redis://:hunter2-secret@127.0.0.1:${port}/0`), quiet),
      (error: Error) => {
        assert.match(
          error.message,
          new RegExp(
            `^Redis at redis://127\\.0\\.0\\.1:${port}/0 \\(HI_REDIS_URL\\) cannot be used: .*ECONNREFUSED`,
          ),
        );
        assert.ok(!error.message.includes("hunter2"));
        return true;
      },
    );
  },
});
