/**
 * From a WAL line to an `edr_records` row: the record's exact canonical text (the bytes its edr_hash
 * covers) and the columns repeated from it for indexes and filters. Shared by the shipper, which builds
 * rows, and the database verify, which checks that a row's columns still agree with its text.
 */

const decoder = new TextDecoder();

/** The columns of one `edr_records` row. */
export interface RecordRow {
  replica_id: string;
  day: string;
  sequence: number;
  request_id: string;
  decision_core_hash: string;
  prev_edr_hash: string | null;
  edr_hash: string;
  created_at: string;
  endpoint: string;
  provider: string | null;
  http_status: number | null;
  outcome: string;
  reason_code: string | null;
  classification: string | null;
  record_text: string;
}

const RECORD_AFTER_INPUT = new TextEncoder().encode(',"record":');
const RECORD_ONLY = new TextEncoder().encode('{"record":');

function lastIndexOfBytes(bytes: Uint8Array, pattern: Uint8Array): number {
  for (let at = bytes.length - pattern.length; at >= 0; at--) {
    let i = 0;
    while (i < pattern.length && bytes[at + i] === pattern[i]) i++;
    if (i === pattern.length) return at;
  }
  return -1;
}

function startsWith(bytes: Uint8Array, pattern: Uint8Array): boolean {
  if (bytes.length < pattern.length) return false;
  for (let i = 0; i < pattern.length; i++) if (bytes[i] !== pattern[i]) return false;
  return true;
}

/**
 * The record's exact canonical text in a WAL line (`{"record":R}` or `{"input":I,"record":R}`). R is the
 * line's last member and its keys are fixed by the schema, so the last `,"record":` is the separator
 * even when the input holds that text (see lib/edr/materializer_worker.ts).
 */
export function recordTextOfWalLine(line: Uint8Array): string | null {
  if (line.length < 2 || line[line.length - 1] !== 0x7d) return null;
  if (startsWith(line, RECORD_ONLY)) {
    return decoder.decode(line.subarray(RECORD_ONLY.length, line.length - 1));
  }
  const at = lastIndexOfBytes(line, RECORD_AFTER_INPUT);
  if (at === -1) return null;
  return decoder.decode(line.subarray(at + RECORD_AFTER_INPUT.length, line.length - 1));
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
