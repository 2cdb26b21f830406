/**
 * The request's reason code and fallback count, as the decision headers, the log line and the spans give
 * them: all three read them through these functions, so they agree with each other and with the record.
 * @module
 */
import type { EdrAttempt } from "../edr/mod.ts";
import type { Exchange } from "./exchange.ts";

/**
 * decide() factors that say why the decision put local first, most telling first (see
 * docs/observability.md).
 */
const LOCAL_FIRST_FACTORS = [
  "MODEL_PINNED",
  "MODEL_PINNED_LOCAL_INSTALLED",
  "SLOT_BUSY_WAIT",
  "CLOUD_BLOCKED_BY_CLASSIFICATION",
  "MODEL_CAPABILITIES_UNKNOWN",
  "LOCAL_HEALTH_UNKNOWN",
  "LOCAL_FIT",
];

/** decide() factors that say why the decision put a cloud provider first, most telling first. */
const CLOUD_FIRST_FACTORS = [
  "MODEL_PINNED",
  "SLOT_BUSY_SPILL",
  "SLOT_QUEUE_FULL_SPILL",
  "LOCAL_UNFIT",
  "LOCAL_MODEL_NOT_INSTALLED",
  "LOCAL_MODEL_NOT_IN_POLICY",
  "FALLBACK_TO_CLOUD",
];

/** A cloud provider came first only because the contract's `provider_allowlist` lists it first. */
export const ALLOWLIST_ORDER = "PROVIDER_ALLOWLIST_ORDER";

/**
 * The request's primary reason code: the failure's code when it failed (what the client was told), else
 * the most telling factor behind the decision's first candidate (`firstProvider`); null when decide()
 * did not run and nothing failed.
 */
export function primaryReason(
  factors: readonly string[],
  firstProvider: string | null | undefined,
  failure: { code?: string; type: string } | null,
): string | null {
  if (failure) return failure.code ?? failure.type.toUpperCase();
  if (!firstProvider) return null;
  const local = firstProvider === "local";
  for (const factor of local ? LOCAL_FIRST_FACTORS : CLOUD_FIRST_FACTORS) {
    if (factors.includes(factor)) return factor;
  }
  return local ? "LOCAL_FIT" : ALLOWLIST_ORDER;
}

/** How many candidates failed (and were fallen back from) before the one that answered or failed last. */
export function fallbackCount(attempts: readonly Pick<EdrAttempt, "outcome">[]): number {
  let count = 0;
  for (const attempt of attempts) if (attempt.outcome === "fallback") count++;
  return count;
}

/** Response headers a browser page on another origin may read (the CORS-safelisted ones aside). */
export const EXPOSED_HEADERS = [
  "x-request-id",
  "request-id",
  "x-hi-provider",
  "x-hi-model",
  "x-hi-reason",
  "x-hi-fallbacks",
  "x-should-retry",
  "retry-after",
].join(", ");

/**
 * The decision headers of an answer, as far as they are known when its first byte goes out: who answered
 * (on an error, the provider tried last; absent when none was), the primary reason code, and how many
 * candidates failed first. An error answer's `x-hi-reason` is its error code (set by the caller). They
 * are added to `headers` (the answer's other headers) when given, so an answer builds one object.
 */
export function decisionHeaders(
  exchange: Exchange,
  headers: Record<string, string> = {},
): Record<string, string> {
  headers["access-control-expose-headers"] = EXPOSED_HEADERS;
  headers["x-hi-fallbacks"] = String(fallbackCount(exchange.attempts));
  const last = exchange.attempts[exchange.attempts.length - 1];
  const answered = exchange.served ?? last;
  if (answered) {
    headers["x-hi-provider"] = answered.provider;
    headers["x-hi-model"] = answered.model;
  }
  const decision = exchange.decision;
  const reason = primaryReason(decision?.factors ?? [], decision?.candidates[0]?.provider, exchange.failure);
  if (reason) headers["x-hi-reason"] = reason;
  return headers;
}
