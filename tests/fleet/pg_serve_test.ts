/**
 * The PostgreSQL EDR store as users run it: `deno task serve` with HI_DATABASE_URL against a real
 * PostgreSQL the test starts. Answers are shipped as rows; with PostgreSQL stopped, answers go on, the
 * backlog on /metrics grows and /readyz warns; started again, the backlog drains; records left behind by a
 * kill -9 ship after the restart, none twice; a second replica keeps its own chain; `deno task verify
 * --database URL --json` passes with one record per request, and names a tampered row. An unreachable
 * database at startup is one "cannot start" line and exit 1. The password never reaches the output.
 */
import assert from "node:assert/strict";
import postgres from "postgres";
import { runTask, startServe } from "../e2e/serve_harness.ts";
import { postgresSkipReason, startPostgres, TEST_PG_PASSWORD } from "./pg_harness.ts";
import { waitFor } from "./poll.ts";

const skip = postgresSkipReason();
if (skip) console.warn(skip);

async function metric(url: string, name: string): Promise<number | null> {
  const text = await (await fetch(`${url}/metrics`)).text();
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line === undefined ? null : Number(line.split(" ")[1]);
}

Deno.test({
  name:
    "pg serve: rows per answer, PostgreSQL down mid-run (answers go on, backlog drains), verify --database",
  ignore: skip !== null,
  async fn(t) {
    const pg = await startPostgres();
    const sql = postgres(pg.url, { max: 1, onnotice: () => {} });
    const served = await startServe({ env: { HI_DATABASE_URL: pg.url, HI_REPLICA_ID: "replica-a" } });
    const count = async () => Number((await sql`SELECT count(*)::int AS n FROM edr_records`)[0].n);
    const ask = async (text: string) => {
      const { response } = await served.client.chat.completions
        .create({ model: "auto", messages: [{ role: "user", content: text }] })
        .withResponse();
      assert.equal(response.status, 200);
    };
    try {
      await t.step("startup says PostgreSQL is in use, without the password", async () => {
        const line = await served.waitForOutput(/edr store: PostgreSQL/);
        assert.match(line, new RegExp(`postgres://127\\.0\\.0\\.1:${pg.port}/hi \\(replica replica-a`));
        await served.waitForOutput(/local health (fit|unfit)/);
      });

      await t.step("each answer becomes one row", async () => {
        for (let i = 0; i < 4; i++) await ask(`hello ${i}`);
        await waitFor("4 rows", async () => await count() === 4);
        assert.equal(await metric(served.url, "hi_edr_ship_backlog"), 0);
      });

      await t.step("PostgreSQL stopped: answers continue, the backlog grows, /readyz warns", async () => {
        await pg.stop();
        for (let i = 0; i < 5; i++) await ask(`while the database is down ${i}`);
        await waitFor("a backlog of 5", async () => await metric(served.url, "hi_edr_ship_backlog") === 5);
        await waitFor(
          "a shipping error",
          async () => (await metric(served.url, "hi_edr_ship_errors_total"))! > 0,
        );
        const ready = await fetch(`${served.url}/readyz`);
        const body = await ready.json();
        assert.equal(ready.status, 200, "still ready: answers do not wait for the database");
        assert.deepEqual(body.warnings, ["edr_shipping_behind"]);
        assert.equal(body.edr_shipping.state, "retrying");
      });

      await t.step("PostgreSQL started again: the backlog drains to 0", async () => {
        await pg.start();
        await waitFor(
          "the backlog to drain",
          async () => await metric(served.url, "hi_edr_ship_backlog") === 0,
        );
        assert.equal(await count(), 9);
        const body = await (await fetch(`${served.url}/readyz`)).json();
        assert.deepEqual(body.warnings, []);
      });

      await t.step(
        "killed with kill -9 while PostgreSQL is down: its durable records wait in the WAL",
        async () => {
          await pg.stop();
          for (let i = 0; i < 2; i++) await ask(`before the crash ${i}`);
          await waitFor("a backlog of 2", async () => await metric(served.url, "hi_edr_ship_backlog") === 2);
          const { output } = await served.stop("SIGKILL");
          assert.ok(!output.includes(TEST_PG_PASSWORD), "the password reached the output");
          assert.match(output, /edr shipping to PostgreSQL postgres:\/\/127\.0\.0\.1:\d+\/hi failed/);
          await pg.start();
          assert.equal(await count(), 9);
        },
      );

      await t.step(
        "restarted on the same folder it resumes: the 2 left behind ship, none twice, new rows follow",
        async () => {
          const again = await startServe({
            artifactsDir: served.artifactsDir,
            env: { HI_DATABASE_URL: pg.url, HI_REPLICA_ID: "replica-a" },
          });
          try {
            await waitFor("the 2 records the crash left behind", async () => await count() === 11);
            for (let i = 0; i < 2; i++) {
              const { response } = await again.client.chat.completions
                .create({ model: "auto", messages: [{ role: "user", content: `after restart ${i}` }] })
                .withResponse();
              assert.equal(response.status, 200);
            }
            await waitFor("13 rows", async () => await count() === 13);
            const [{ n }] = await sql`SELECT count(DISTINCT (day, sequence))::int AS n FROM edr_records`;
            assert.equal(n, 13);
            const { code, output } = await again.stop();
            assert.equal(code, 0, "a clean stop");
            assert.ok(!output.includes(TEST_PG_PASSWORD), "the password reached the output");
          } finally {
            await again.close();
          }
          assert.equal(await count(), 13, "the final pass at stop shipped nothing twice");
        },
      );

      await t.step("a second replica with its own folder ships its own chain beside the first", async () => {
        const b = await startServe({ env: { HI_DATABASE_URL: pg.url, HI_REPLICA_ID: "replica-b" } });
        try {
          const before = await (await fetch(`${b.url}/api/records?limit=1`)).json();
          assert.equal(
            before.total,
            13,
            "replica a's records, listed by replica b before it answered anything",
          );
          const { response } = await b.client.chat.completions
            .create({ model: "auto", messages: [{ role: "user", content: "from replica b" }] })
            .withResponse();
          assert.equal(response.status, 200);
          await waitFor("14 rows", async () => await count() === 14);
          // With the database configured, the explorer lists every replica's records, not only b's own.
          const api = async (path: string, init?: RequestInit) => {
            const res = await fetch(`${b.url}/api/${path}`, init);
            return { status: res.status, body: await res.json() };
          };
          const listed = await api("records?limit=100");
          assert.equal(listed.status, 200);
          assert.equal(
            listed.body.total,
            14,
            JSON.stringify(
              listed.body.records.map((
                r: { sequence: number; request_id: string },
              ) => [r.sequence, r.request_id.slice(4, 10)]),
            ),
          );
          // Pages of 5 walk every record once, each cursor passed back as it came.
          const paged: string[] = [];
          for (let cursor = "";;) {
            const page = await api(`records?limit=5${cursor ? `&cursor=${cursor}` : ""}`);
            assert.equal(page.status, 200, JSON.stringify(page.body));
            paged.push(...page.body.records.map((r: { request_id: string }) => r.request_id));
            if (page.body.next_cursor === null) break;
            cursor = page.body.next_cursor;
          }
          assert.deepEqual(paged, listed.body.records.map((r: { request_id: string }) => r.request_id));
          assert.equal((await api("records?cursor=2026-01-01.3")).status, 400, "another source's cursor");
          const ownId = response.headers.get("x-request-id")!;
          assert.equal(listed.body.records[0].request_id, ownId, "newest first");
          const fromA = listed.body.records.find((r: { request_id: string }) => r.request_id !== ownId);
          const page = await api(`records/${fromA.request_id}`);
          assert.equal(page.status, 200);
          assert.equal(page.body.record.request_id, fromA.request_id);
          // Its chain links stay inside replica a's chain, though replica b has a record of the same day.
          assert.equal(
            page.body.chain.previous?.sequence ?? null,
            fromA.sequence > 1 ? fromA.sequence - 1 : null,
          );
          const own = await api(`records/${ownId}`);
          assert.deepEqual(
            own.body.chain,
            { previous: null, next: null },
            "b's one record has no neighbours",
          );
          const days = await api("days");
          assert.equal(days.body.days.reduce((n: number, d: { records: number }) => n + d.records, 0), 14);
          const replay = (id: string) =>
            api(`records/${id}/replay`, {
              method: "POST",
              headers: { "content-type": "application/json" },
              body: "{}",
            });
          assert.equal((await replay(ownId)).body.report.status, "MATCH", "b replays its own record");
          assert.equal((await replay(fromA.request_id)).status, 404, "a's input is on a's disk, not b's");
          assert.equal((await b.stop()).code, 0);
        } finally {
          await b.close();
        }
        const perReplica = await sql`SELECT replica_id, max(sequence)::int AS head FROM edr_records
          GROUP BY replica_id ORDER BY replica_id`;
        assert.deepEqual(perReplica.map((r) => [r.replica_id, r.head]), [["replica-a", 13], [
          "replica-b",
          1,
        ]]);
      });

      await t.step("deno task verify --database URL --json passes with one record per request", async () => {
        const { code, stdout, output } = await runTask(["verify", "--database", pg.url, "--json"]);
        assert.equal(code, 0, output);
        const result = JSON.parse(stdout);
        assert.equal(result.records, 14);
        assert.equal(result.chains, 2);
        assert.equal(result.replicas, 2);
        assert.deepEqual(result.findings, []);
        assert.ok(result.checkpoints >= 1, "the shutdown checkpoint was shipped");
      });

      await t.step("a tampered row is a finding and a non-zero exit", async () => {
        await sql`UPDATE edr_records SET record_text = replace(record_text, '"stream":false', '"stream":true')
          WHERE sequence = 2`;
        const { code, output } = await runTask(["verify", "--database", pg.url]);
        assert.equal(code, 1, output);
        assert.match(output, /ALTERED\s+replica-a\/\d{4}-\d{2}-\d{2} .*was altered/);
        assert.ok(!output.includes(TEST_PG_PASSWORD));
      });

      await t.step("a cut tail is found through the checkpoint shipped at the stop", async () => {
        await sql`DELETE FROM edr_records WHERE replica_id = 'replica-a' AND sequence = 13`;
        const { code, stdout, output } = await runTask(["verify", "--database", pg.url, "--json"]);
        assert.equal(code, 1, output);
        const kinds = JSON.parse(stdout).findings.map((f: { kind: string; chain: string }) =>
          `${f.kind} ${f.chain.split("/")[0]}`
        );
        assert.ok(kinds.includes("truncated replica-a"), kinds.join("\n"));
      });
    } finally {
      await served.close();
      await sql.end({ timeout: 1 });
      await pg.close();
    }
  },
});

Deno.test({
  name: "pg serve: an unreachable database at startup is one cannot-start line and exit 1",
  ignore: skip !== null,
  async fn() {
    const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    const port = (listener.addr as Deno.NetAddr).port;
    listener.close();
    const artifacts = await Deno.makeTempDir({ prefix: "hi-pg-down-" });
    try {
      const url = `postgres://hi:${TEST_PG_PASSWORD}@127.0.0.1:${port}/hi`;
      const { code, output } = await runTask(["serve"], {
        HI_DATABASE_URL: url,
        HI_PORT: "0",
        HI_ARTIFACTS_DIR: artifacts,
        OLLAMA_HOST: "127.0.0.1:9",
      });
      assert.equal(code, 1, output);
      assert.match(
        output,
        new RegExp(
          `^hybrid-inference cannot start: the PostgreSQL EDR store postgres://127\\.0\\.0\\.1:${port}/hi`,
          "m",
        ),
      );
      assert.ok(!output.includes(TEST_PG_PASSWORD), "the password reached the output");
      assert.ok(!output.includes("listening on"), "it must not serve");
    } finally {
      await Deno.remove(artifacts, { recursive: true });
    }
  },
});
