/**
 * From a WAL line to an `edr_records` row: the record's exact canonical text (the bytes its edr_hash
 * covers) and the columns repeated from it for indexes and filters. Shared by the shipper, which builds
 * rows, and the database verify, which checks that a row's columns still agree with its text.
 */

import { parseWalLine } from "../edr/mod.ts";

const decoder = new TextDecoder();

/** The columns repeated from a record for filters: what its list row and the database verify read back. */
export interface SummaryColumns {
  request_id: string;
  edr_hash: string;
  endpoint: string;
  provider: string | null;
  http_status: number | null;
  outcome: string;
  reason_code: string | null;
  classification: string | null;
}

/** The columns of one `edr_records` row. */
export interface RecordRow extends SummaryColumns {
  replica_id: string;
  day: string;
  sequence: number;
  decision_core_hash: string;
  prev_edr_hash: string | null;
  created_at: string;
  record_text: string;
}

/**
 * The record's exact canonical text in a WAL line (`{"record":R}` or `{"input":I,"record":R}`), found by
 * the WAL's one line parser (which walks the line's structure, so an input mimicking the keys cannot
 * mislead it); null when the line is not a record line.
 */
export function recordTextOfWalLine(line: Uint8Array): string | null {
  try {
    const [start, end] = parseWalLine(line, 0, line.length).record;
    return decoder.decode(line.subarray(start, end));
  } catch {
    return null;
  }
}

/** The row of a record's canonical text, or null when the text is not a record (the line is skipped). */
export function recordRow(replicaId: string, day: string, text: string): RecordRow | null {
  let r: Record<string, unknown>;
  try {
    r = JSON.parse(text);
  } catch {
    return null;
  }
  const str = (v: unknown) => typeof v === "string" ? v : null;
  const obj = (v: unknown) => v !== null && typeof v === "object" ? v as Record<string, unknown> : null;
  const sequence = r?.sequence;
  if (!Number.isSafeInteger(sequence) || (sequence as number) < 1) return null;
  const required = [r.request_id, r.decision_core_hash, r.edr_hash, r.timestamp, r.endpoint];
  if (required.some((v) => typeof v !== "string")) return null;
  const attempts = Array.isArray(r.attempts) ? r.attempts : [];
  const lastStatus = obj(attempts[attempts.length - 1])?.status;
  const failure = obj(r.failure);
  return {
    replica_id: replicaId,
    day,
    sequence: sequence as number,
    request_id: r.request_id as string,
    decision_core_hash: r.decision_core_hash as string,
    prev_edr_hash: str(r.prev_edr_hash),
    edr_hash: r.edr_hash as string,
    created_at: r.timestamp as string,
    endpoint: r.endpoint as string,
    provider: str(obj(r.decision)?.provider),
    http_status: Number.isSafeInteger(lastStatus) ? lastStatus as number : null,
    outcome: failure ? str(failure.type) ?? "failed" : "ok",
    reason_code: failure ? str(failure.code) : null,
    classification: str(obj(r.effective_contract)?.classification),
    record_text: text,
  };
}
