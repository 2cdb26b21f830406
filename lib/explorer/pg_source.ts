/**
 * The explorer's records from the PostgreSQL EDR store (`HI_DATABASE_URL`): every replica's records, not
 * only this router's. Rows are summarized from their canonical text by the same `summarize()` and filtered
 * by the same `matches()` as the file source, so both sources list a record the same way. Like the file
 * source, it keeps one summary per record in memory and reads only what is new on each call: each chain
 * (replica and day) is read past the last sequence it has seen, since a replica ships its chain in order.
 * Verify runs the database verify; replay needs the record's captured input, which stays on the replica that
 * served it, so it is delegated to this router's own files (a record of another replica answers 404 here).
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
const CURSOR = /^\d{1,9}$/;

/** Options of the database source. */
export interface PgSourceOptions {
  /** This router's own records (its artifacts folder): where replay finds captured inputs. */
  local?: RecordSource;
}

export class PgRecordSource implements RecordSource {
  #sql: Sql;
  #local: RecordSource | undefined;
  #verifying: Promise<Awaited<ReturnType<typeof verifyDatabase>>> | null = null;
  /** Each day's summaries, newest first, of every replica. */
  #byDay = new Map<string, RecordSummary[]>();
  /** The last sequence read of each chain, `replica/day`. */
  #seen = new Map<string, number>();
  #refreshing: Promise<void> | null = null;

  constructor(sql: Sql, options: PgSourceOptions = {}) {
    this.#sql = sql;
    this.#local = options.local;
  }

  async days(): Promise<DayCount[]> {
    const rows = await this.#sql<{ day: string; records: number }[]>`
      SELECT day::text AS day, count(*)::int AS records FROM edr_records GROUP BY day ORDER BY day DESC`;
    return rows.map(({ day, records }) => ({ day, records }));
  }

  /** A page boundary: the place in the filtered listing where the next page starts. */
  isCursor(cursor: string): boolean {
    return CURSOR.test(cursor);
  }

  async list(filter: RecordFilter, page: { cursor?: string; limit: number }): Promise<RecordPage> {
    const all = (await this.#summaries(filter.day)).filter((row) => matches(row, filter));
    const start = page.cursor && CURSOR.test(page.cursor) ? Number(page.cursor) : 0;
    const records = all.slice(start, start + page.limit);
    const end = start + records.length;
    return { records, next_cursor: end < all.length ? String(end) : null, total: all.length };
  }

  daySummaries(day: string): Promise<RecordSummary[]> {
    return this.#summaries(day);
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

  /** The summaries of one day, or of every day, newest first (by day, then time), after reading what is new. */
  async #summaries(day?: string): Promise<RecordSummary[]> {
    await (this.#refreshing ??= this.#refresh().finally(() => this.#refreshing = null));
    if (day !== undefined) return DAY.test(day) ? [...(this.#byDay.get(day) ?? [])] : [];
    return [...this.#byDay.keys()].sort().reverse().flatMap((d) => this.#byDay.get(d)!);
  }

  /** Reads each chain past the last sequence seen, and re-sorts the days that got rows. */
  async #refresh(): Promise<void> {
    const sql = this.#sql;
    const heads = await sql<{ replica_id: string; day: string; head: string }[]>`
      SELECT replica_id, day::text AS day, max(sequence)::text AS head FROM edr_records GROUP BY 1, 2`;
    const changed = new Set<string>();
    for (const { replica_id: replica, day, head } of heads) {
      const chain = `${replica}/${day}`;
      const seen = this.#seen.get(chain) ?? 0;
      if (Number(head) <= seen) continue;
      // Ordered by the table's bigint column, not the text one selected (as text, 10 sorts before 9).
      const rows = await sql<{ sequence: string; record_text: string }[]>`
        SELECT sequence::text, record_text FROM edr_records
        WHERE replica_id = ${replica} AND day = ${day}::date AND sequence > ${seen}
        ORDER BY edr_records.sequence`;
      let list = this.#byDay.get(day);
      if (!list) this.#byDay.set(day, list = []);
      for (const { record_text } of rows) list.push(summarize(JSON.parse(record_text) as EdrRecord));
      this.#seen.set(chain, Number(rows.at(-1)?.sequence ?? seen));
      changed.add(day);
    }
    for (const day of changed) {
      this.#byDay.get(day)!.sort((a, b) =>
        a.timestamp < b.timestamp ? 1 : a.timestamp > b.timestamp ? -1 : b.sequence - a.sequence
      );
    }
  }
}
