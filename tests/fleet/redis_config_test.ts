/**
 * HI_REDIS_URL as users meet it: parsed with a clear message, shown without its password, granted to the
 * server by the launcher (network to Redis only, the client's two variables), and an unreachable Redis
 * stops `deno task serve` with one "cannot start" line and exit code 1.
 */
import assert from "node:assert/strict";
import { serverPermissionFlags } from "../../cli/serve.ts";
import { parseRedisUrl } from "../../lib/fleet/redis.ts";
import { configFromEnv } from "../../lib/http/mod.ts";
import { runTask } from "../e2e/serve_harness.ts";
import { redisAvailable, startRedisServer } from "./redis_server.ts";

Deno.test("HI_REDIS_URL is parsed, shown without credentials, and granted by the launcher", () => {
  const target = parseRedisUrl("rediss://app:s3cret-pw@cache.internal:6380/2");
  assert.equal(target.hostPort, "cache.internal:6380");
  assert.equal(target.display, "rediss://cache.internal:6380/2");
  assert.equal(parseRedisUrl("redis://10.0.0.5").hostPort, "10.0.0.5:6379");
  assert.throws(() => parseRedisUrl("http://cache:6379"), /must start with redis:\/\/ or rediss:\/\//);
  assert.throws(() => parseRedisUrl("cache:6379"), /redis:\/\/ or rediss:\/\//);
  assert.throws(() => parseRedisUrl("redis://cache:6379/x"), /database number/);

  assert.equal(configFromEnv({}).redis, undefined, "without HI_REDIS_URL nothing changes");
  assert.equal(configFromEnv({ HI_REDIS_URL: "  " }).redis, undefined);
  const config = configFromEnv({ HI_PORT: "0", HI_REDIS_URL: "redis://:pw@127.0.0.1:6390/0" });
  const flags = serverPermissionFlags(config, []);
  const net = flags.find((f) => f.startsWith("--allow-net="))!.split("=")[1].split(",");
  assert.ok(net.includes("127.0.0.1:6390"), `${net}`);
  const env = flags.find((f) => f.startsWith("--allow-env="))!.split("=")[1].split(",");
  for (const name of ["HI_REDIS_URL", "REDIS_DEBUG_MAINTENANCE", "REDIS_EMIT_DIAGNOSTICS"]) {
    assert.ok(env.includes(name), `${name} is granted`);
  }
  const plain = serverPermissionFlags(configFromEnv({ HI_PORT: "0" }), []);
  assert.ok(!plain.join(" ").includes("REDIS_DEBUG"), "without Redis the client's variables are not granted");
});

Deno.test({
  name: "deno task serve with an unreachable Redis says so in one line and exits 1",
  ignore: !redisAvailable(),
  async fn() {
    const server = await startRedisServer();
    const port = server.port;
    await server.close();
    const dir = await Deno.makeTempDir({ prefix: "hi-serve-" });
    try {
      const { code, output } = await runTask(["serve"], {
        HI_PORT: "0",
        HI_ARTIFACTS_DIR: `${dir}/artifacts`,
        HI_REDIS_URL: `redis://:do-not-print-me@127.0.0.1:${port}/0`,
      });
      assert.equal(code, 1, output);
      assert.match(
        output,
        new RegExp(
          `^hybrid-inference cannot start: Redis at redis://127\\.0\\.0\\.1:${port}/0 \\(HI_REDIS_URL\\) cannot be used: .*ECONNREFUSED.*\\n$`,
        ),
      );
      assert.ok(!output.includes("do-not-print-me"));
      const written = await Array.fromAsync(Deno.readDir(dir));
      assert.deepEqual(written, [], "nothing was written before Redis was reached");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
