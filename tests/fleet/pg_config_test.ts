/**
 * HI_DATABASE_URL and HI_REPLICA_ID in the configuration and the launcher: a bad URL is refused with a
 * reason that does not repeat it, the server may reach the database's host:port and read the two
 * variables plus PGAPPNAME (which the client reads whatever its options say), and nothing changes without it.
 */
import assert from "node:assert/strict";
import { serverPermissionFlags } from "../../cli/serve.ts";
import { configFromEnv } from "../../lib/http/mod.ts";
import { parseDatabaseUrl } from "../../lib/fleet/pg.ts";

const base = { HI_PORT: "18998", HI_ARTIFACTS_DIR: "/tmp/hi-pg-config", OLLAMA_HOST: "127.0.0.1:11434" };
const flag = (flags: string[], name: string) =>
  flags.find((f) => f.startsWith(`--allow-${name}=`))!.slice(`--allow-${name}=`.length).split(",");

Deno.test("HI_DATABASE_URL: launcher permissions, redaction and refusals", async (t) => {
  await t.step("the database host:port and its variables are granted only when it is set", () => {
    const withDb = serverPermissionFlags(
      configFromEnv({ ...base, HI_DATABASE_URL: "postgresql://hi:pw@db.internal:6543/edr" }),
      [],
    );
    assert.ok(flag(withDb, "net").includes("db.internal:6543"));
    for (const name of ["HI_DATABASE_URL", "HI_REPLICA_ID", "PGAPPNAME"]) {
      assert.ok(flag(withDb, "env").includes(name), name);
    }
    assert.ok(!flag(withDb, "env").some((n) => n.startsWith("PG") && n !== "PGAPPNAME"));
    const without = serverPermissionFlags(configFromEnv(base), []);
    assert.ok(!flag(without, "net").some((h) => h.includes("5432") || h.includes("db.internal")));
    assert.ok(!flag(without, "env").includes("PGAPPNAME"));
    assert.equal(configFromEnv(base).databaseUrl, undefined);
  });

  await t.step("the URL is said without its credentials; the default port is 5432", () => {
    const target = parseDatabaseUrl("postgres://hi:s3cret@10.0.0.5/edr?sslmode=require");
    assert.equal(target.redacted, "postgres://10.0.0.5:5432/edr");
    assert.equal(target.netEntry, "10.0.0.5:5432");
    assert.equal(parseDatabaseUrl("postgres://hi@[::1]:5433/edr").netEntry, "[::1]:5433");
  });

  await t.step("bad URLs and replica ids are refused without repeating the password", () => {
    for (
      const [url, why] of [
        ["mysql://hi:s3cret@db/edr", /must start with postgres:\/\//],
        ["postgres://db.internal/edr", /names no user/],
        ["postgres://hi:s3cret@db.internal", /names no database/],
        ["not a url s3cret", /is not a URL/],
      ] as const
    ) {
      assert.throws(() => configFromEnv({ ...base, HI_DATABASE_URL: url }), (error: Error) => {
        assert.match(error.message, why);
        assert.ok(!error.message.includes("s3cret"), error.message);
        return true;
      });
    }
    assert.throws(() => configFromEnv({ ...base, HI_REPLICA_ID: "a b" }), /HI_REPLICA_ID must be/);
    assert.equal(configFromEnv({ ...base, HI_REPLICA_ID: "edge-1" }).replicaId, "edge-1");
  });

  await t.step(
    "the client reads no PG* variable but PGAPPNAME, with or without a password in the URL",
    async () => {
      const connect = new URL("../../lib/fleet/pg_connect.ts", import.meta.url).href;
      for (const url of ["postgres://hi@127.0.0.1:1/hi", "postgres://hi:pw@127.0.0.1:1/hi?sslmode=disable"]) {
        const code = `import { openDatabase, parseDatabaseUrl } from "${connect}";
        const sql = openDatabase(parseDatabaseUrl(${JSON.stringify(url)}), { session: "read-write" });
        await sql.end({ timeout: 0 });
        openDatabase(parseDatabaseUrl(${JSON.stringify(url)})).end({ timeout: 0 });`;
        // `deno eval` would grant everything: run a file under the router's env grant instead.
        const file = await Deno.makeTempFile({ suffix: ".ts" });
        try {
          await Deno.writeTextFile(file, code);
          const config = new URL("../../deno.json", import.meta.url).pathname;
          const out = await new Deno.Command(Deno.execPath(), {
            args: ["run", "--config", config, "--allow-env=PGAPPNAME", "--allow-read", file],
            stdout: "piped",
            stderr: "piped",
          }).output();
          assert.equal(out.code, 0, new TextDecoder().decode(out.stderr));
        } finally {
          await Deno.remove(file);
        }
      }
    },
  );
});
