/**
 * `HI_REDIS_URL=rediss://…` through `deno task serve`: the router reaches a TLS-only redis-server whose
 * certificate comes from a private CA named in `DENO_CERT`, and shares its leases there; without that CA
 * the certificate is not trusted and the router refuses to start, in one line, having written nothing.
 */
import assert from "node:assert/strict";
import { runTask, startServeHealthy } from "../e2e/serve_harness.ts";
import { redisAvailable, startRedisServer } from "./redis_server.ts";
import { opensslAvailable } from "./test_certificates.ts";

const available = redisAvailable() && opensslAvailable();

async function chatWithLease(url: string, leaseId: string): Promise<{ status: number; code?: string }> {
  const response = await fetch(`${url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({
      model: "auto",
      messages: [{ role: "user", content: "over TLS" }],
      authority: { issued_by: "tls-test", scope: "chat:completions", ttl: 600, lease_id: leaseId },
    }),
  });
  const body = await response.json();
  return { status: response.status, code: body.error?.code };
}

Deno.test({
  name: "rediss:// with the private CA in DENO_CERT: leases are shared in Redis over TLS",
  ignore: !available,
  async fn() {
    const redis = await startRedisServer({ tls: true, password: `pw-${crypto.randomUUID()}` });
    const router = await startServeHealthy({
      noCloudKeys: true,
      env: { HI_REDIS_URL: redis.url, DENO_CERT: redis.caFile! },
    });
    try {
      assert.match(
        router.output(),
        new RegExp(`shared in Redis at rediss://127\\.0\\.0\\.1:${redis.port}\\n`),
      );
      const lease = `lease-${crypto.randomUUID()}`;
      assert.deepEqual(await chatWithLease(router.url, lease), { status: 200, code: undefined });
      // The second use is refused because Redis, reached over TLS, holds the first.
      assert.deepEqual(await chatWithLease(router.url, lease), { status: 403, code: "LEASE_REPLAY" });
    } finally {
      await router.close();
      await redis.close();
    }
  },
});

Deno.test({
  name: "rediss:// to a certificate nobody vouches for: deno task serve refuses to start, in one line",
  ignore: !available,
  async fn() {
    const redis = await startRedisServer({ tls: true });
    const dir = await Deno.makeTempDir({ prefix: "hi-serve-" });
    try {
      const { code, output } = await runTask(["serve"], {
        HI_PORT: "0",
        HI_ARTIFACTS_DIR: `${dir}/artifacts`,
        HI_REDIS_URL: redis.url,
      });
      assert.equal(code, 1, output);
      assert.match(
        output,
        new RegExp(
          `^hybrid-inference cannot start: Redis at rediss://127\\.0\\.0\\.1:${redis.port} \\(HI_REDIS_URL\\) cannot be used: .*certificate.*\\n$`,
        ),
      );
      const written = await Array.fromAsync(Deno.readDir(dir));
      assert.deepEqual(written, [], "nothing was written before Redis was reached");
    } finally {
      await Deno.remove(dir, { recursive: true });
      await redis.close();
    }
  },
});
