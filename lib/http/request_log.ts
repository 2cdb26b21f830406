/**
 * The one log line each request leaves, built from its EDR draft (the record before the writer hashed
 * and chained it), so the log line and the record never disagree. The line carries reason codes, model
 * names, counts and timings; never prompt or answer text, failure messages (they may quote a request
 * field's value), keys, signatures or authority blocks.
 */
import type { EdrDraft } from "../edr/mod.ts";

/** `HI_LOG` values, most to least verbose. */
export const LOG_LEVELS = ["debug", "info", "warn", "error", "off"] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Reads `HI_LOG` (unset or blank means `info`); any other value is a configuration error. */
export function parseLogLevel(value: string | undefined): LogLevel {
  const raw = (value ?? "").trim().toLowerCase();
  if (raw === "") return "info";
  if ((LOG_LEVELS as readonly string[]).includes(raw)) return raw as LogLevel;
  throw new Error(`HI_LOG must be one of ${LOG_LEVELS.join(", ")}, not ${JSON.stringify(value)}`);
}

/** True when a line of `line` level is printed under the `threshold` level. */
export function logs(threshold: LogLevel, line: Exclude<LogLevel, "off">): boolean {
  return LOG_LEVELS.indexOf(line) >= LOG_LEVELS.indexOf(threshold) && threshold !== "off";
}

// The reason code and fallback count are the pipeline's (lib/pipeline/reasons.ts): the decision headers
// read them too.
export { ALLOWLIST_ORDER, fallbackCount, primaryReason } from "../pipeline/mod.ts";
import { fallbackCount, primaryReason } from "../pipeline/mod.ts";

const LOST_RECORD = { code: "EDR_WRITE_FAILED", type: "uncaught_exception" } as const;

/**
 * The failure a request ended with as its client saw it: the draft's, except that a record the writer lost
 * (which the draft cannot know) failed the request with EDR_WRITE_FAILED, unless the request was already
 * refused because the writer was down. The log line and the request span both report this one.
 */
export function answeredFailure(
  draft: EdrDraft,
  recordLost: boolean,
): EdrDraft["failure"] | typeof LOST_RECORD {
  return recordLost && draft.failure?.code !== "EDR_UNAVAILABLE" ? LOST_RECORD : draft.failure;
}

/** One request's log line as an object, in the order its fields print. */
export interface RequestLogEntry {
  ts: string;
  level: "debug" | "info" | "warn" | "error";
  msg: "request";
  request_id: string;
  endpoint: string;
  stream: boolean;
  classification: string | null;
  provider: string | null;
  model: string | null;
  path: string;
  status: number;
  reason: string | null;
  fallbacks: number;
  first_byte_ms: number | null;
  total_ms: number;
  input_tokens: number | null;
  output_tokens: number | null;
  /** `provider:CODE` of each attempt that did not answer (warn and error lines, and every line at debug). */
  attempt_failures?: string[];
  /** decide()'s reason codes (debug only). */
  factors?: string[];
}

/**
 * The log line of a request from its EDR draft and the HTTP status its client got: `warn` when a
 * candidate failed or the request failed, `error` when the router itself failed it (an internal error, a
 * record that could not be written: `recordLost`, which the draft cannot know), `info` otherwise. Pure:
 * `now` is the line's timestamp.
 */
export function requestLogEntry(
  draft: EdrDraft,
  status: number,
  now: number,
  threshold: LogLevel = "info",
  recordLost = false,
): RequestLogEntry {
  const fallbacks = fallbackCount(draft.attempts);
  const failure = answeredFailure(draft, recordLost);
  const level = (failure?.type === "uncaught_exception" && status >= 500) || recordLost
    ? "error"
    : failure || fallbacks > 0 || status >= 400
    ? "warn"
    : "info";
  const entry: RequestLogEntry = {
    ts: new Date(now).toISOString(),
    level,
    msg: "request",
    request_id: draft.request_id,
    endpoint: draft.endpoint,
    stream: draft.stream,
    classification: draft.effective_contract?.classification ?? null,
    provider: draft.decision.provider,
    model: draft.decision.model,
    path: draft.decision.path,
    status,
    reason: primaryReason(draft.decision_factors, draft.candidates[0]?.provider, failure),
    fallbacks,
    first_byte_ms: draft.timings.first_byte_ms,
    total_ms: draft.timings.total_ms,
    input_tokens: draft.usage?.prompt_tokens ?? null,
    output_tokens: draft.usage?.completion_tokens ?? null,
  };
  const debug = threshold === "debug";
  if (level !== "info" || debug) {
    const failed = draft.attempts.filter((a) => a.outcome !== "ok");
    if (failed.length > 0) {
      entry.attempt_failures = failed.map((a) => `${a.provider}:${a.error_code ?? a.outcome.toUpperCase()}`);
    }
  }
  if (debug) entry.factors = draft.decision_factors;
  return entry;
}

/** The line when nothing was drafted (the record could not even be built): what the exchange knows. */
export function undraftedLogEntry(
  requestId: string,
  endpoint: string,
  status: number,
  now: number,
): RequestLogEntry {
  return {
    ts: new Date(now).toISOString(),
    level: "error",
    msg: "request",
    request_id: requestId,
    endpoint,
    stream: false,
    classification: null,
    provider: null,
    model: null,
    path: "failed",
    status,
    reason: "EDR_NOT_BUILT",
    fallbacks: 0,
    first_byte_ms: null,
    total_ms: 0,
    input_tokens: null,
    output_tokens: null,
  };
}

/** A JSON line (no newline). */
export function jsonLine(entry: RequestLogEntry): string {
  return JSON.stringify(entry);
}

/**
 * A logfmt line (no newline): `key=value` pairs, values quoted when they hold a space, `=` or a quote,
 * null printed as nothing (`first_byte_ms=`), lists joined with commas.
 */
export function logfmtLine(entry: RequestLogEntry): string {
  const parts: string[] = [];
  for (const [key, value] of Object.entries(entry)) {
    const text = value === null ? "" : Array.isArray(value) ? value.join(",") : String(value);
    parts.push(`${key}=${/[\s="\\]/.test(text) ? JSON.stringify(text) : text}`);
  }
  return parts.join(" ");
}
