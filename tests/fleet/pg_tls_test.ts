/**
 * `HI_DATABASE_URL=…?sslmode=verify-full` through `deno task serve` and `deno task verify --database`: with
 * the private CA of the PostgreSQL server's certificate in `DENO_CERT`, records are shipped over TLS (the
 * server's own view says so) and verify passes; without it the certificate is refused, and the router does
 * not start, in one line without the password.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { runTask, startServe } from "../e2e/serve_harness.ts";
import { postgresSkipReason, startPostgres, TEST_PG_PASSWORD } from "./pg_harness.ts";
import { waitFor } from "./poll.ts";
import { opensslAvailable } from "./test_certificates.ts";

const skip = postgresSkipReason();
if (skip) console.warn(skip);
const available = skip === null && opensslAvailable();

Deno.test({
  name: "sslmode=verify-full with the private CA in DENO_CERT: records ship over TLS and verify passes",
  ignore: !available,
  async fn() {
    const pg = await startPostgres({ tls: true });
    const url = `${pg.url}?sslmode=verify-full`;
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    const served = await startServe({
      env: { HI_DATABASE_URL: url, HI_REPLICA_ID: "tls-a", DENO_CERT: pg.caFile! },
    });
    try {
      for (let i = 0; i < 2; i++) {
        const { response } = await served.client.chat.completions
          .create({ model: "auto", messages: [{ role: "user", content: `over TLS ${i}` }] })
          .withResponse();
        assert.equal(response.status, 200);
      }
      await waitFor("2 rows", async () => (await sql`SELECT count(*)::int AS n FROM edr_records`)[0].n === 2);
      const [sessions] = await sql`
        SELECT count(*)::int AS n, bool_and(s.ssl) AS all_tls
        FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
        WHERE a.application_name = 'hybrid-inference'`;
      assert.ok(sessions.n >= 1, "the router holds a session");
      assert.equal(sessions.all_tls, true, "every session of the router is TLS");
      const { code, stdout, output } = await runTask(["verify", "--database", url, "--json"], {
        DENO_CERT: pg.caFile!,
      });
      assert.equal(code, 0, output);
      assert.equal(JSON.parse(stdout).records, 2);
    } finally {
      await served.close();
      await sql.end();
      await pg.close();
    }
  },
});

Deno.test({
  name: "sslmode=verify-full to a certificate nobody vouches for: deno task serve refuses to start",
  ignore: !available,
  async fn() {
    const pg = await startPostgres({ tls: true });
    const artifacts = await Deno.makeTempDir({ prefix: "hi-pg-tls-" });
    try {
      const { code, output } = await runTask(["serve"], {
        HI_DATABASE_URL: `${pg.url}?sslmode=verify-full`,
        HI_PORT: "0",
        HI_ARTIFACTS_DIR: `${artifacts}/artifacts`,
        OLLAMA_HOST: "127.0.0.1:9",
      });
      assert.equal(code, 1, output);
      assert.match(
        output,
        new RegExp(
          `^hybrid-inference cannot start: the PostgreSQL EDR store postgres://127\\.0\\.0\\.1:${pg.port}/hi.*certificate`,
          "m",
        ),
      );
      assert.ok(!output.includes(TEST_PG_PASSWORD), "the password reached the output");
      assert.ok(!output.includes("listening on"), "it must not serve");
    } finally {
      await Deno.remove(artifacts, { recursive: true });
      await pg.close();
    }
  },
});
