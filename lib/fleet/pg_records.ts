/**
 * Read-only queries of the EDR store for an explorer: a day's records newest first with filters, and one
 * record by request id. Summaries come from the indexed columns; the record itself from its canonical text.
 */
import type { EdrRecord } from "../edr/mod.ts";
import type { Sql } from "./pg_connect.ts";
import type { SummaryColumns } from "./pg_rows.ts";

/** One row of a day's list. */
export interface RecordSummary extends SummaryColumns {
  replica_id: string;
  sequence: number;
  created_at: string;
}

/** Filters of `listDayRecords`; all optional but the day. */
export interface DayRecordsQuery {
  /** The UTC day, `YYYY-MM-DD`. */
  day: string;
  replicaId?: string;
  provider?: string;
  /** `ok`, or a failure type (`provider_error`, `validation_error`, ...). */
  outcome?: string;
  reasonCode?: string;
  classification?: string;
  /** Only records created before this instant (ISO 8601): the `created_at` of the last row of a page. */
  before?: string;
  /** Most rows (default 100, at most 1,000). */
  limit?: number;
}

/** A day's records, newest first, filtered. */
export async function listDayRecords(sql: Sql, query: DayRecordsQuery): Promise<RecordSummary[]> {
  if (!/^\d{4}-\d{2}-\d{2}$/.test(query.day)) throw new Error(`day must be YYYY-MM-DD, not ${query.day}`);
  const limit = Math.min(Math.max(1, Math.trunc(query.limit ?? 100)), 1_000);
  const where = [sql`day = ${query.day}::date`];
  if (query.replicaId !== undefined) where.push(sql`replica_id = ${query.replicaId}`);
  if (query.provider !== undefined) where.push(sql`provider = ${query.provider}`);
  if (query.outcome !== undefined) where.push(sql`outcome = ${query.outcome}`);
  if (query.reasonCode !== undefined) where.push(sql`reason_code = ${query.reasonCode}`);
  if (query.classification !== undefined) where.push(sql`classification = ${query.classification}`);
  if (query.before !== undefined) where.push(sql`created_at < ${query.before}::timestamptz`);
  const condition = where.reduce((all, next) => sql`${all} AND ${next}`);
  const rows = await sql<
    (Omit<RecordSummary, "sequence" | "created_at"> & { sequence: string; created: string })[]
  >`
    SELECT replica_id, sequence::text, request_id,
      to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"') AS created,
      endpoint, provider, http_status, outcome, reason_code, classification, edr_hash
    FROM edr_records WHERE ${condition}
    ORDER BY edr_records.created_at DESC, edr_records.replica_id, edr_records.sequence DESC LIMIT ${limit}`;
  return rows.map(({ sequence, created, ...row }) => ({
    ...row,
    sequence: Number(sequence),
    created_at: created,
  }));
}

/** The record of a request id, with the replica that shipped it; null when the store has none. */
export async function recordByRequestId(
  sql: Sql,
  requestId: string,
): Promise<{ replica_id: string; record: EdrRecord } | null> {
  const rows = await sql<{ replica_id: string; record_text: string }[]>`
    SELECT replica_id, record_text FROM edr_records WHERE request_id = ${requestId}
    ORDER BY created_at LIMIT 1`;
  if (rows.length === 0) return null;
  return { replica_id: rows[0].replica_id, record: JSON.parse(rows[0].record_text) as EdrRecord };
}
