/**
 * The explorer's records from the PostgreSQL EDR store (`HI_DATABASE_URL`): every replica's records, not
 * only this router's. Rows are summarized from their canonical text by the same `summarize()` and filtered
 * by the same `matches()` as the file source, so both sources list a record the same way; the day and the
 * request-id prefix are pushed into the query. Verify runs the database verify; replay needs the record's
 * captured input, which stays on the replica that served it, so it is delegated to this router's own files
 * (a record of another replica answers 404 there).
 */
import type { EdrRecord } from "../edr/mod.ts";
import { recordByRequestId, type Sql, verifyDatabase } from "../fleet/pg.ts";
import {
  type ChainLink,
  type DayCount,
  type DayVerification,
  dayVerification,
  type ExplorerReplay,
  type RecordFilter,
  type RecordPage,
  type RecordSource,
} from "./source.ts";
import { matches, type RecordSummary, summarize } from "./summary.ts";

const DAY = /^\d{4}-\d{2}-\d{2}$/;
/** Rows read per round trip while summarizing. */
const FETCH_ROWS = 1_000;

/** Options of the database source. */
export interface PgSourceOptions {
  /** This router's own records (its artifacts folder): where replay finds captured inputs. */
  local?: RecordSource;
}

export class PgRecordSource implements RecordSource {
  #sql: Sql;
  #local: RecordSource | undefined;
  #verifying: Promise<Awaited<ReturnType<typeof verifyDatabase>>> | null = null;

  constructor(sql: Sql, options: PgSourceOptions = {}) {
    this.#sql = sql;
    this.#local = options.local;
  }

  async days(): Promise<DayCount[]> {
    const rows = await this.#sql<{ day: string; records: number }[]>`
      SELECT day::text AS day, count(*)::int AS records FROM edr_records GROUP BY day ORDER BY day DESC`;
    return rows.map(({ day, records }) => ({ day, records }));
  }

  async list(filter: RecordFilter, page: { cursor?: string; limit: number }): Promise<RecordPage> {
    const all = await this.#summaries(filter);
    // The cursor is the place in the filtered listing where the next page starts.
    const start = page.cursor && /^\d{1,9}$/.test(page.cursor) ? Number(page.cursor) : 0;
    const records = all.slice(start, start + page.limit);
    const end = start + records.length;
    return { records, next_cursor: end < all.length ? String(end) : null, total: all.length };
  }

  daySummaries(day: string): Promise<RecordSummary[]> {
    return this.#summaries({ day });
  }

  async get(requestId: string): Promise<EdrRecord | null> {
    return (await recordByRequestId(this.#sql, requestId))?.record ?? null;
  }

  /** Neighbours in the record's own chain: its replica's records of its day. */
  async neighbours(record: EdrRecord): Promise<{ previous: ChainLink | null; next: ChainLink | null }> {
    const rows = await this.#sql<{ request_id: string; sequence: number; edr_hash: string }[]>`
      SELECT n.request_id, n.sequence::int AS sequence, n.edr_hash
      FROM edr_records r JOIN edr_records n
        ON n.replica_id = r.replica_id AND n.day = r.day AND n.sequence IN (r.sequence - 1, r.sequence + 1)
      WHERE r.request_id = ${record.request_id}`;
    const link = (sequence: number) => rows.find((row) => row.sequence === sequence) ?? null;
    return { previous: link(record.sequence - 1), next: link(record.sequence + 1) };
  }

  async verifyDay(day: string): Promise<DayVerification> {
    // The database verify reads every chain: calls that arrive while one runs share its result.
    this.#verifying ??= verifyDatabase(this.#sql).finally(() => this.#verifying = null);
    return dayVerification(day, await this.#verifying, (finding) => `${finding.chain}: `);
  }

  async replay(requestId: string): Promise<ExplorerReplay | null> {
    return await this.#local?.replay?.(requestId) ?? null;
  }

  /** Every summary matching `filter`, newest first: by day, then time, then place in its chain. */
  async #summaries(filter: RecordFilter): Promise<RecordSummary[]> {
    const sql = this.#sql;
    const where = [sql`true`];
    if (filter.day !== undefined) {
      if (!DAY.test(filter.day)) return [];
      where.push(sql`day = ${filter.day}::date`);
    }
    if (filter.requestId) where.push(sql`starts_with(request_id, ${filter.requestId})`);
    const condition = where.reduce((all, next) => sql`${all} AND ${next}`);
    const out: RecordSummary[] = [];
    await sql<{ record_text: string }[]>`
      SELECT record_text FROM edr_records WHERE ${condition}
      ORDER BY day DESC, created_at DESC, sequence DESC`
      .cursor(FETCH_ROWS, (rows) => {
        for (const { record_text } of rows) {
          const summary = summarize(JSON.parse(record_text) as EdrRecord);
          if (matches(summary, filter)) out.push(summary);
        }
      });
    return out;
  }
}
