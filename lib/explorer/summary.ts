/**
 * The row the request table shows for a record, and the per-day statistics. Pure functions of the
 * record: they read nothing but what the EDR holds (which holds no prompt text).
 */
import type { EdrRecord } from "../edr/mod.ts";
import type { RecordFilter } from "./source.ts";

/** One row of the request table. */
export interface RecordSummary {
  request_id: string;
  timestamp: string;
  /** UTC day of `timestamp`, `YYYY-MM-DD`. */
  day: string;
  sequence: number;
  endpoint: string;
  stream: boolean;
  /** `PUBLIC` … `SECRET`, or `none` when the request failed before a contract existed. */
  classification: string;
  /** Who served: `local`, `anthropic`, `openai`, or `none`. */
  provider: string;
  model: string | null;
  /** `primary`, `fallback`, `rejected` or `failed`. */
  path: string;
  /** `ok` when the record holds no failure, else the failure's type. */
  status: string;
  /**
   * The reason code the table shows: the failure's code; else, after a fallback, the error code of the
   * attempt that fell back; else the first decision factor that is not the contract's own.
   */
  reason: string | null;
  /** Every reason code of the record (decision factors, failure code, fallback error code), for the filter. */
  reasons: string[];
  /** Candidates that were tried and failed before the one that answered (or before giving up). */
  fallbacks: number;
  first_byte_ms: number | null;
  total_ms: number;
  edr_hash: string;
}

// Factors that restate the contract rather than say why this provider was chosen.
const CONTRACT_FACTOR = /^(CLASSIFICATION_|LATENCY_)/;

/** The table row of a record. */
export function summarize(record: EdrRecord): RecordSummary {
  const factors = record.decision_factors;
  const failureCode = record.failure?.code ?? null;
  // Why a candidate was left for the next one: the error of the first attempt that fell back.
  const fellBackOn =
    record.attempts.find((a) => a.outcome === "fallback" && a.error_code !== null)?.error_code ??
      null;
  const reasons = [...new Set([...factors, failureCode, fellBackOn].filter((c): c is string => c !== null))];
  return {
    request_id: record.request_id,
    timestamp: record.timestamp,
    day: record.timestamp.slice(0, 10),
    sequence: record.sequence,
    endpoint: record.endpoint,
    stream: record.stream,
    classification: record.effective_contract?.classification ?? "none",
    provider: record.decision.provider ?? "none",
    model: record.decision.model,
    path: record.decision.path,
    status: record.failure === null ? "ok" : record.failure.type,
    reason: failureCode ?? fellBackOn ?? factors.find((f) => !CONTRACT_FACTOR.test(f)) ?? factors[0] ?? null,
    reasons,
    fallbacks: record.attempts.filter((a) => a.outcome === "fallback").length,
    first_byte_ms: record.timings.first_byte_ms,
    total_ms: record.timings.total_ms,
    edr_hash: record.edr_hash,
  };
}

/** Whether a summary passes a filter. */
export function matches(row: RecordSummary, filter: RecordFilter): boolean {
  if (filter.day && row.day !== filter.day) return false;
  if (filter.provider && row.provider !== filter.provider) return false;
  if (filter.status && row.status !== filter.status) return false;
  if (filter.classification && row.classification !== filter.classification) return false;
  if (filter.reason && !row.reasons.includes(filter.reason)) return false;
  if (filter.requestId && !row.request_id.startsWith(filter.requestId)) return false;
  if (filter.sequence !== undefined && row.sequence !== filter.sequence) return false;
  return true;
}

/** Upper bounds (ms) of the latency histogram's buckets; the last bucket has none. */
export const LATENCY_BUCKETS_MS = [10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];

/** A day's counts, latency histogram and per-provider share. */
export interface DayStats {
  day: string;
  records: number;
  by_status: Record<string, number>;
  by_provider: Record<string, number>;
  by_classification: Record<string, number>;
  by_reason: Record<string, number>;
  /** Total latency: `le_ms` is the bucket's upper bound (null for the last, open one). */
  latency_histogram: { le_ms: number | null; count: number }[];
  /** Each provider's share of the day's records, 0..1. */
  provider_share: Record<string, number>;
  latency_ms: { p50: number | null; p95: number | null; max: number | null };
}

/** Statistics of a day's rows. */
export function dayStats(day: string, rows: RecordSummary[]): DayStats {
  const count = (key: (r: RecordSummary) => string | null) => {
    const out: Record<string, number> = {};
    for (const row of rows) {
      const k = key(row);
      if (k !== null) out[k] = (out[k] ?? 0) + 1;
    }
    return out;
  };
  const histogram = [...LATENCY_BUCKETS_MS, null].map((le_ms) => ({ le_ms, count: 0 }));
  for (const row of rows) {
    const index = LATENCY_BUCKETS_MS.findIndex((le) => row.total_ms <= le);
    histogram[index === -1 ? LATENCY_BUCKETS_MS.length : index].count++;
  }
  const byProvider = count((r) => r.provider);
  const share: Record<string, number> = {};
  for (const [provider, n] of Object.entries(byProvider)) share[provider] = n / rows.length;
  const sorted = rows.map((r) => r.total_ms).sort((a, b) => a - b);
  const quantile = (q: number) =>
    sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return {
    day,
    records: rows.length,
    by_status: count((r) => r.status),
    by_provider: byProvider,
    by_classification: count((r) => r.classification),
    by_reason: count((r) => r.reason),
    latency_histogram: histogram,
    provider_share: share,
    latency_ms: {
      p50: quantile(0.5),
      p95: quantile(0.95),
      max: sorted.length ? sorted[sorted.length - 1] : null,
    },
  };
}
