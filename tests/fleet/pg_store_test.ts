/**
 * The EDR store against a real PostgreSQL (started by the test, see pg_harness.ts): the migration is
 * idempotent and matches schemas/sql, the shipper ships each record once and in order across restarts,
 * the explorer queries answer, and the database verify passes an intact store and names a tampered row.
 */
import assert from "node:assert/strict";
import { EdrWriter } from "../../lib/edr/mod.ts";
import {
  EdrShipper,
  listDayRecords,
  migrate,
  MIGRATIONS,
  openDatabase,
  parseDatabaseUrl,
  recordByRequestId,
  replicaIdFor,
  type Sql,
  verifyDatabase,
} from "../../lib/fleet/pg.ts";
import { sampleDraft, sampleInput } from "../edr/sample_draft.ts";
import { postgresSkipReason, startPostgres } from "./pg_harness.ts";
import { waitFor } from "./poll.ts";

const skip = postgresSkipReason();
if (skip) console.warn(skip);

async function rowsOf(sql: Sql, replica: string) {
  return await sql<{ sequence: string; request_id: string; day: string }[]>`
    SELECT sequence::text, request_id, day::text FROM edr_records WHERE replica_id = ${replica}
    ORDER BY edr_records.day, edr_records.sequence`;
}

Deno.test({
  name: "pg store: migration, ordered exactly-once shipping across restarts, queries, verify and tampering",
  ignore: skip !== null,
  async fn(t) {
    const pg = await startPostgres();
    const dir = await Deno.makeTempDir({ prefix: "hi-pg-store-" });
    const target = parseDatabaseUrl(pg.url);
    const sql = openDatabase(target, { session: "read-write" });
    const logs: string[] = [];
    const log = (line: string) => logs.push(line);
    try {
      await t.step("the migration runs once, then is a no-op, and matches schemas/sql", async () => {
        assert.deepEqual(await migrate(sql), [1]);
        assert.deepEqual(await migrate(sql), []);
        const published = await Deno.readTextFile(new URL("../../schemas/sql/001_edr.sql", import.meta.url));
        assert.deepEqual(MIGRATIONS[0].sql, published);
        const [{ n }] = await sql<{ n: string }[]>`SELECT count(*)::text AS n FROM hi_schema_migrations`;
        assert.deepEqual(n, "1");
      });

      const replica = await replicaIdFor(dir, undefined);
      await t.step("the replica id is generated once and kept in the artifacts folder", async () => {
        assert(/^r-[0-9a-f]{16}$/.test(replica), replica);
        assert.deepEqual(await replicaIdFor(dir, undefined), replica);
        assert.deepEqual(await replicaIdFor(dir, "edge-1"), "edge-1");
      });

      /** A shipper of `artifactsDir` under this replica id, on its own client (it ends it when it stops). */
      const startShipper = (
        artifactsDir: string,
        writer: EdrWriter,
        more: { log: (line: string) => void; batchRecords?: number },
      ) =>
        EdrShipper.start({
          sql: openDatabase(target, { session: "read-write" }),
          target,
          artifactsDir,
          replicaId: replica,
          heads: () => writer.heads(),
          pollMs: 20,
          ...more,
        });
      const days = ["2026-11-27T10:00:00.000Z", "2026-11-28T10:00:00.000Z"];
      const committed: string[] = [];
      const commitSome = async (writer: EdrWriter, n: number) => {
        for (let i = 0; i < n; i++) {
          const record = await writer.commit(
            sampleDraft({ timestamp: days[i % 2] }),
            { capturedInput: sampleInput(`hello ${committed.length}`) },
          );
          committed.push(record.request_id);
        }
      };

      await t.step("records ship in order, once each, and resume after a restart", async () => {
        let writer = await EdrWriter.open(dir);
        let shipper = await startShipper(dir, writer, { log, batchRecords: 7 });
        await commitSome(writer, 40);
        await waitFor("the first 40 rows", async () => (await rowsOf(sql, replica)).length === 40);
        assert.deepEqual(shipper.backlog(), 0);
        await shipper.stop();
        await writer.close();

        // A restart: new writer, new shipper on a new connection; the database says where to resume.
        writer = await EdrWriter.open(dir);
        await commitSome(writer, 30);
        shipper = await startShipper(dir, writer, { log, batchRecords: 7 });
        await waitFor("all 70 rows", () => shipper.backlog() === 0);
        // It resumed where the database said: only the 30 new records were sent, none of the first 40.
        assert.equal(shipper.status().shipped_total, 30);
        await shipper.stop();
        await writer.close();

        const rows = await rowsOf(sql, replica);
        assert.deepEqual(rows.length, 70, "no duplicates, none missing");
        for (const day of ["2026-11-27", "2026-11-28"]) {
          const sequences = rows.filter((r) => r.day === day).map((r) => Number(r.sequence));
          assert.deepEqual(sequences, Array.from({ length: 35 }, (_, i) => i + 1));
        }
        assert.deepEqual(new Set(rows.map((r) => r.request_id)), new Set(committed));
      });

      await t.step("the explorer queries: a day newest first with filters, one by request id", async () => {
        const list = await listDayRecords(sql, { day: "2026-11-28", limit: 5 });
        assert.deepEqual(list.length, 5);
        assert.deepEqual(list.map((r) => r.sequence), [35, 34, 33, 32, 31]);
        assert.deepEqual(list[0].provider, "local");
        assert.deepEqual(list[0].outcome, "ok");
        assert.deepEqual((await listDayRecords(sql, { day: "2026-11-28", provider: "openai" })).length, 0);
        const one = await recordByRequestId(sql, committed[3]);
        assert.deepEqual(one?.replica_id, replica);
        assert.deepEqual(one?.record.request_id, committed[3]);
        assert.deepEqual(await recordByRequestId(sql, "req_" + "0".repeat(32)), null);
      });

      await t.step("another folder under the same replica id ships nothing and says why", async () => {
        for (const [name, count, timestamp] of [["fewer", 3, days[0]], ["more", 40, days[1]]] as const) {
          const other = await Deno.makeTempDir({ prefix: `hi-pg-${name}-` });
          const writer = await EdrWriter.open(other);
          for (let i = 0; i < count; i++) await writer.commit(sampleDraft({ timestamp }));
          const lines: string[] = [];
          const shipper = await startShipper(other, writer, { log: (line) => lines.push(line) });
          try {
            await waitFor("the conflict", () => shipper.status().last_error !== null);
            assert.equal(shipper.status().state, "retrying", name);
            assert.match(shipper.status().last_error!, /HI_REPLICA_ID/);
            assert.ok(lines.some((l) => l.includes("is not this artifacts folder's")), lines.join("\n"));
          } finally {
            await shipper.stop(500);
            await writer.close();
            await Deno.remove(other, { recursive: true });
          }
          assert.equal((await rowsOf(sql, replica)).length, 70, `${name}: nothing shipped`);
        }
      });

      await t.step("verify --database passes the intact store and names a tampered row", async () => {
        const intact = await verifyDatabase(sql);
        assert.deepEqual(intact.findings, []);
        assert.deepEqual([intact.ok, intact.records, intact.chains], [true, 70, 2]);

        await sql`UPDATE edr_records SET record_text = replace(record_text, '"qwen3:8b"', '"qwen3:14b"')
          WHERE replica_id = ${replica} AND day = '2026-11-27' AND sequence = 5`;
        const tampered = await verifyDatabase(sql);
        assert.deepEqual(tampered.ok, false);
        const kinds = tampered.findings.map((f) => `${f.kind} ${f.chain} ${f.sequence}`);
        assert(kinds.includes(`altered ${replica}/2026-11-27 5`), kinds.join("\n"));
      });
    } finally {
      await sql.end({ timeout: 1 });
      await pg.close();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
