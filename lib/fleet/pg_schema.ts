/**
 * The EDR store's schema and its migrations. The router runs `migrate()` at startup: every migration not
 * yet applied runs in one transaction under an advisory lock, so replicas starting together apply each
 * once, and a started one is never applied twice. The SQL of each migration is the published file
 * `schemas/sql/<version>_<name>.sql`, imported as text: a static import is part of the module graph, so the
 * router needs no read permission on schemas/ for it.
 */
import type { Sql } from "./pg_connect.ts";
import edrSql from "../../schemas/sql/001_edr.sql" with { type: "text" };

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
    sql: edrSql,
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
