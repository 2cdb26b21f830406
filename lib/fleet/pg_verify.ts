/**
 * `deno task verify --database URL`: every chain in the database (one per replica and UTC day) gets the
 * checks of the file verify, through the same functions: each record's schema and own hashes
 * (`checkRecord`), the chain's sequences and links (`DayChain`), and its checkpoints
 * (`checkCheckpointLines`). A row's columns must also agree with the record text they were taken from,
 * and its jsonb copy with that text. The database holds no write-ahead log, so a cut tail is found only
 * through the checkpoints shipped with the chain (see docs/fleet.md).
 */
import { checkCheckpointLines, checkRecord, DayChain, type VerifyFinding } from "../replay/mod.ts";
import { parseCheckpoint } from "../edr/mod.ts";
import type { Sql } from "./pg_connect.ts";
import { recordRow, type SummaryColumns } from "./pg_rows.ts";

/** A finding of the database verify: the file verify's, with the chain (`<replica id>/<YYYY-MM-DD>`). */
export type DatabaseFinding = VerifyFinding & { chain: string };

/** The outcome of `verifyDatabase`. */
export interface DatabaseVerifyResult {
  ok: boolean;
  /** Rows examined. */
  records: number;
  /** Chains examined (replica id × day). */
  chains: number;
  /** Replicas with at least one chain. */
  replicas: number;
  checkpoints: number;
  signatures_unchecked: number;
  findings: DatabaseFinding[];
  findings_omitted: number;
}

/** Options of `verifyDatabase`. */
export interface DatabaseVerifyOptions {
  checkpointSecret?: string;
  /** Most findings listed (default 10,000). */
  maxFindings?: number;
  /** Rows fetched at a time (default 1,000), which bounds memory besides the chain columns. */
  fetchRows?: number;
}

interface Row extends SummaryColumns {
  sequence: string;
  decision_core_hash: string;
  prev_edr_hash: string | null;
  created_ms: string;
  record_text: string;
  copy_matches: boolean;
}

const COLUMNS = [
  "sequence",
  "request_id",
  "decision_core_hash",
  "prev_edr_hash",
  "edr_hash",
  "endpoint",
  "provider",
  "http_status",
  "outcome",
  "reason_code",
  "classification",
] as const;

/** Verifies every chain of the EDR store; throws only when the database cannot be read. */
export async function verifyDatabase(
  sql: Sql,
  options: DatabaseVerifyOptions = {},
): Promise<DatabaseVerifyResult> {
  const maxFindings = options.maxFindings ?? 10_000;
  const result: DatabaseVerifyResult = {
    ok: true,
    records: 0,
    chains: 0,
    replicas: 0,
    checkpoints: 0,
    signatures_unchecked: 0,
    findings: [],
    findings_omitted: 0,
  };
  const chains = await sql<{ replica_id: string; day: string; rows: string }[]>`
    SELECT replica_id, day, sum(n)::text AS rows FROM (
      SELECT replica_id, day::text AS day, count(*) AS n FROM edr_records GROUP BY 1, 2
      UNION ALL
      SELECT replica_id, day::text AS day, 0 AS n FROM edr_checkpoints GROUP BY 1, 2
    ) AS c GROUP BY 1, 2 ORDER BY 1, 2`;
  const replicas = new Set<string>();
  for (const { replica_id: replica, day, rows } of chains) {
    replicas.add(replica);
    const chainId = `${replica}/${day}`;
    const add = (finding: VerifyFinding) => {
      if (result.findings.length < maxFindings) result.findings.push({ ...finding, chain: chainId });
      else result.findings_omitted++;
    };
    const dayPath = day.replaceAll("-", "/");
    const chain = new DayChain(dayPath, Number(rows), { add, expect: new Set(), found: new Set() });
    chain.endWal();
    await sql<Row[]>`
      SELECT sequence::text, request_id, decision_core_hash, prev_edr_hash, edr_hash,
        (extract(epoch FROM created_at) * 1000)::bigint::text AS created_ms, endpoint, provider,
        http_status, outcome, reason_code, classification, record_text,
        (record = record_text::jsonb) AS copy_matches
      FROM edr_records WHERE replica_id = ${replica} AND day = ${day}::date ORDER BY edr_records.sequence`
      .cursor(options.fetchRows ?? 1_000, (batch: Row[]) => {
        for (const row of batch) {
          result.records++;
          const entry = checkRow(row, replica, day, dayPath, add);
          if (entry) chain.addFile(entry);
        }
      });
    chain.finish();
    const lines = await sql<{ line_text: string }[]>`
      SELECT line_text FROM edr_checkpoints WHERE replica_id = ${replica} AND day = ${day}::date
      ORDER BY at, sequence`;
    await checkCheckpointLines(
      lines.map((l, i) => ({ number: i + 1, checkpoint: parseCheckpoint(l.line_text) })),
      `edr_checkpoints of replica ${replica}`,
      day,
      chain,
      options,
      result,
      add,
    );
  }
  result.chains = chains.length;
  result.replicas = replicas.size;
  result.ok = result.findings.length === 0 && result.findings_omitted === 0;
  return result;
}

/** Checks one row: the record's own checks, then its columns and jsonb copy against its text. */
function checkRow(
  row: Row,
  replica: string,
  day: string,
  dayPath: string,
  add: (finding: VerifyFinding) => void,
) {
  const file = `${dayPath}/${row.decision_core_hash}.json`;
  const sequence = Number(row.sequence);
  let parsed: unknown;
  try {
    parsed = JSON.parse(row.record_text);
  } catch {
    add({
      kind: "unreadable",
      day: dayPath,
      file,
      sequence,
      message: `the row of ${file} (sequence ${sequence}) holds no JSON`,
    });
    return null;
  }
  const entry = checkRecord(parsed, { file, day: dayPath, name: row.decision_core_hash }, add);
  const expected = recordRow(replica, day, row.record_text);
  const differ: string[] = [];
  if (expected) {
    for (const column of COLUMNS) {
      const have = column === "sequence" ? sequence : row[column];
      if (have !== expected[column]) differ.push(column);
    }
    if (Number(row.created_ms) !== Date.parse(expected.created_at)) differ.push("created_at");
  }
  if (!row.copy_matches) differ.push("record");
  if (differ.length > 0) {
    add({
      kind: "altered",
      day: dayPath,
      file,
      sequence,
      message: `the row of ${file} (sequence ${sequence}) was altered: its ${differ.join(", ")} ` +
        `column(s) disagree with its record text`,
    });
  }
  return entry;
}
