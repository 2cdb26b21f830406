/**
 * Opening the PostgreSQL EDR store at router start: connect, run the migrations, settle the replica id.
 * Any failure is one sentence naming the database without its credentials, so the router can say
 * "cannot start" and exit; nothing on the request path waits on the database afterwards.
 */
import {
  databaseReason,
  type DatabaseTarget,
  openDatabase,
  parseDatabaseUrl,
  type Sql,
} from "./pg_connect.ts";
import { migrate } from "./pg_schema.ts";
import { replicaIdFor } from "./pg_replica.ts";

/** A connected, migrated store and the replica id this router ships under. */
export interface EdrStore {
  sql: Sql;
  target: DatabaseTarget;
  replicaId: string;
  /** Migration versions applied by this start (empty when the schema was up to date). */
  applied: number[];
}

/** Connects to `url`, migrates, and reads (or makes) the replica id; throws one clear sentence on failure. */
export async function openEdrStore(
  url: string,
  artifactsDir: string,
  configuredReplicaId: string | undefined,
): Promise<EdrStore> {
  const target = parseDatabaseUrl(url);
  const replicaId = await replicaIdFor(artifactsDir, configuredReplicaId);
  const sql = openDatabase(target, { session: "read-write" });
  try {
    const applied = await migrate(sql);
    return { sql, target, replicaId, applied };
  } catch (error) {
    await sql.end({ timeout: 0 }).catch(() => {});
    throw new Error(
      `the PostgreSQL EDR store ${target.redacted} cannot be used (${databaseReason(error, target)}); ` +
        "start it or fix HI_DATABASE_URL, or unset HI_DATABASE_URL to keep records on this host only",
    );
  }
}
