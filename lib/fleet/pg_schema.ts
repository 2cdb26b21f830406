/**
 * The EDR store's schema and its migrations. The router runs `migrate()` at startup: every migration not
 * yet applied runs in one transaction under an advisory lock, so replicas starting together apply each
 * once, and a started one is never applied twice. The SQL of each migration is also published as
 * `schemas/sql/<version>_<name>.sql`; tests/fleet/pg_migrate_test.ts holds the two equal (the router
 * cannot read schemas/ under its scoped permissions, so the text lives here).
 */
import type { Sql } from "./pg_connect.ts";

/** One versioned migration. */
export interface Migration {
  version: number;
  name: string;
  sql: string;
}

/** Every migration, in version order. */
export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "edr",
    sql: `-- hybrid-inference EDR store, migration 1 (run by the router at startup; see docs/fleet.md).
-- One row per EDR a replica shipped. record_text is the record's exact RFC 8785 canonical JSON, the
-- bytes its edr_hash covers, so \`deno task verify --database\` can check every hash; record is a jsonb
-- copy derived from it for queries. The other columns repeat fields of the record for indexes and
-- filters; verify checks that they agree with record_text.
CREATE TABLE IF NOT EXISTS edr_records (
  replica_id          text        NOT NULL,
  day                 date        NOT NULL,
  sequence            bigint      NOT NULL,
  request_id          text        NOT NULL,
  decision_core_hash  text        NOT NULL,
  prev_edr_hash       text,
  edr_hash            text        NOT NULL,
  created_at          timestamptz NOT NULL,
  endpoint            text        NOT NULL,
  provider            text,
  http_status         integer,
  outcome             text        NOT NULL,
  reason_code         text,
  classification      text,
  record_text         text        NOT NULL,
  record              jsonb       GENERATED ALWAYS AS (record_text::jsonb) STORED,
  shipped_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT edr_records_idempotence UNIQUE (replica_id, decision_core_hash),
  CONSTRAINT edr_records_chain_position UNIQUE (replica_id, day, sequence)
);
CREATE INDEX IF NOT EXISTS edr_records_day_created ON edr_records (day, created_at DESC);
CREATE INDEX IF NOT EXISTS edr_records_request_id ON edr_records (request_id);

-- The checkpoint lines of each replica's days (checkpoints/YYYY-MM-DD.jsonl), shipped after the
-- records they count. line_text is the line as written, signature included.
CREATE TABLE IF NOT EXISTS edr_checkpoints (
  replica_id  text        NOT NULL,
  day         date        NOT NULL,
  sequence    bigint      NOT NULL,
  edr_hash    text        NOT NULL,
  at          text        NOT NULL,
  line_text   text        NOT NULL,
  shipped_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT edr_checkpoints_idempotence UNIQUE (replica_id, day, at, sequence)
);
`,
  },
];

/** Any number, the same in every replica: the advisory lock that serializes migrations. */
const MIGRATION_LOCK = 0x68692d6d; // "hi-m"

/** Applies the migrations the database lacks; returns the versions applied now (none when up to date). */
export async function migrate(sql: Sql): Promise<number[]> {
  return await sql.begin(async (tx) => {
    await tx`SELECT pg_advisory_xact_lock(${MIGRATION_LOCK})`;
    await tx.unsafe(`CREATE TABLE IF NOT EXISTS hi_schema_migrations (
      version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())`);
    const rows = await tx<{ version: number }[]>`SELECT version FROM hi_schema_migrations`;
    const done = new Set(rows.map((r) => Number(r.version)));
    const applied: number[] = [];
    for (const migration of MIGRATIONS) {
      if (done.has(migration.version)) continue;
      await tx.unsafe(migration.sql);
      await tx`INSERT INTO hi_schema_migrations (version, name) VALUES (${migration.version}, ${migration.name})`;
      applied.push(migration.version);
    }
    return applied;
  });
}
