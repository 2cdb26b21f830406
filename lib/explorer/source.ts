/**
 * Where the explorer's records come from. The API (api.ts) speaks only to this interface, so a source
 * backed by a database (`HI_DATABASE_URL`) can stand beside the file source (file_source.ts).
 */
import type { EdrRecord } from "../edr/mod.ts";
import type { ReplayReport } from "../replay/mod.ts";
import type { RecordSummary } from "./summary.ts";

/** Filters of a record listing; every one is optional and they combine with AND. */
export interface RecordFilter {
  /** UTC day, `YYYY-MM-DD`. */
  day?: string;
  /** `local`, `anthropic`, `openai`, or `none` (nothing served). */
  provider?: string;
  /** `ok`, or a failure type (`provider_error`, `policy_rejection`, ...); see summary.ts. */
  status?: string;
  /** A reason code: a decision factor, the failure code, or the error code an attempt fell back on. */
  reason?: string;
  /** `PUBLIC`, `INTERNAL`, `SENSITIVE`, `SECRET`, or `none` (no contract was formed). */
  classification?: string;
  /** A request id, or the start of one. */
  requestId?: string;
  /** A place in a day's chain (with `day`, one record). */
  sequence?: number;
}

/** One page of a listing, newest first. */
export interface RecordPage {
  records: RecordSummary[];
  /** Pass back as `cursor` for the next (older) page; null on the last page. */
  next_cursor: string | null;
  /** How many records match the filter in all. */
  total: number;
}

/** A record's neighbour in its chain, as the request page links it. */
export interface ChainLink {
  request_id: string;
  sequence: number;
  edr_hash: string;
}

/** A day with its record count. */
export interface DayCount {
  day: string;
  records: number;
}

/** A day's chain status, from verify. */
export interface DayVerification {
  day: string;
  intact: boolean;
  /** Records the verifier examined in the whole tree (verify reads every day to check the checkpoints). */
  records_checked: number;
  findings: { kind: string; file: string | null; sequence: number | null; message: string }[];
  findings_omitted: number;
}

/**
 * One day's part of a whole-store verify: its findings (each message prefixed by `label`, when given) and
 * whether the day is intact. Both sources verify everything at once and show the asked day.
 */
export function dayVerification<
  F extends {
    day: string | null;
    kind: string;
    file: string | null;
    sequence: number | null;
    message: string;
  },
>(
  day: string,
  result: { records: number; findings: F[]; findings_omitted: number },
  label: (finding: F) => string = () => "",
): DayVerification {
  const folder = day.replaceAll("-", "/");
  const findings = result.findings
    .filter((f) => f.day === folder)
    .map((f) => ({ kind: f.kind, file: f.file, sequence: f.sequence, message: `${label(f)}${f.message}` }));
  return {
    day,
    intact: findings.length === 0 && result.findings_omitted === 0,
    records_checked: result.records,
    findings,
    findings_omitted: result.findings_omitted,
  };
}

/** A replay run from the explorer: the sealed report of lib/replay, never written to disk. */
export interface ExplorerReplay {
  report: ReplayReport;
}

/** What the explorer reads. `verifyDay` and `replay` are optional: a source without files cannot run them. */
export interface RecordSource {
  /** Days that hold records, newest first. */
  days(): Promise<DayCount[]>;
  /** Whether `cursor` is of the form this source hands out as `next_cursor` (each source has its own). */
  isCursor(cursor: string): boolean;
  /** Summaries matching `filter`, newest first (by day, then sequence), `limit` of them after `cursor`. */
  list(filter: RecordFilter, page: { cursor?: string; limit: number }): Promise<RecordPage>;
  /** Every summary of one day (for its statistics). */
  daySummaries(day: string): Promise<RecordSummary[]>;
  /** The full record as stored, or null when no record has this request id. */
  get(requestId: string): Promise<EdrRecord | null>;
  /**
   * The records either side of `record` in its own chain, when the source holds several chains per day (one
   * per replica); without it the neighbours are looked up by day and sequence.
   */
  neighbours?(record: EdrRecord): Promise<{ previous: ChainLink | null; next: ChainLink | null }>;
  verifyDay?(day: string): Promise<DayVerification>;
  replay?(requestId: string): Promise<ExplorerReplay | null>;
}
