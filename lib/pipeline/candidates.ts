/**
 * The candidate chain: each candidate in decide()'s order gets an attempt until one answers; a failure
 * moves on only when it is worth a fallback and the client has seen nothing yet. What the failure of
 * the last one means for the client is decided here too.
 * @module
 */
import type { Candidate } from "../contract/mod.ts";
import type { HealthGate } from "../health/mod.ts";
import { RouterError } from "./errors.ts";
import { UpstreamError } from "../providers/mod.ts";
import { Attempt, type Placement } from "./attempt.ts";
import type { Pipeline } from "./context.ts";
import type { Exchange } from "./exchange.ts";
import { clientGone } from "./request_input.ts";

/**
 * Starts a call on an opened attempt (the relays implement it). With `holdsAttempt` the attempt outlives
 * the call's start (a stream's relay releases it when the stream ends); without, it is released as soon as
 * the call returns.
 */
export interface AttemptCall<T> {
  readonly holdsAttempt: boolean;
  call(attempt: Attempt): Promise<T>;
}

/** Tries `candidates` in order; every attempt is recorded. Resolves with the first call's value that answers. */
export async function tryCandidates<T>(
  pipeline: Pipeline,
  exchange: Exchange,
  clientSignal: AbortSignal,
  candidates: Candidate[],
  starter: AttemptCall<T>,
): Promise<T> {
  const { metrics } = pipeline.deps;
  let lastError: UpstreamError | RouterError | null = null;
  for (let i = 0; i < candidates.length; i++) {
    const candidate = candidates[i];
    const next = i < candidates.length - 1 ? candidates[i + 1] : undefined;
    const placement = placementOf(pipeline, exchange, candidate);
    if (placement === null) continue;
    let opened = Attempt.open(pipeline, exchange, clientSignal, candidate, placement, next);
    if (opened instanceof Promise) opened = await opened;
    if (opened === null) continue;
    const attempt = opened;
    try {
      if (clientSignal.aborted) throw clientGone();
      const value = await starter.call(attempt);
      attempt.succeeded(exchange);
      if (!starter.holdsAttempt) attempt.release();
      return value;
    } catch (error) {
      attempt.release();
      attempt.stopped();
      if (clientSignal.aborted || (error instanceof UpstreamError && error.code === "CLIENT_ABORTED")) {
        attempt.failed("aborted", "CLIENT_ABORTED", null);
        throw clientGone();
      }
      if (!(error instanceof UpstreamError)) throw error;
      if (attempt.local) recordLocalFailure(placement.health, error);
      if (error.fallback && next !== undefined) {
        attempt.failed("fallback", error.code, error.upstreamStatus ?? null);
        metrics.countFallback(candidate.provider, next.provider, error.code);
        lastError = error;
        continue;
      }
      attempt.failed("failed", error.code, error.upstreamStatus ?? null);
      // A field the local model cannot honour is the client's to fix, not the host being unavailable.
      const hostProblem = error.code !== "UNSUPPORTED_FIELD";
      throw attempt.local && error.fallback && hostProblem
        ? localUnavailable(exchange, error)
        : toRouterError(error);
    }
  }
  throw lastError instanceof UpstreamError ? toRouterError(lastError) : new RouterError(
    503,
    "NO_PROVIDER_AVAILABLE",
    "no provider could serve the request; check GET /readyz and the configured keys",
    { failureType: "provider_error", stage: "execute" },
  );
}

/** The adapter, health gate and host a candidate runs with; null when its provider has no adapter. */
function placementOf(pipeline: Pipeline, exchange: Exchange, candidate: Candidate): Placement | null {
  // With several local hosts a local candidate names its host; with one, the host is the only one.
  const host = candidate.local_host === undefined
    ? null
    : pipeline.hostByUrl?.get(candidate.local_host) ?? null;
  // One host: the placement is the provider's, made once for the router's life.
  if (host === null) return pipeline.placements[candidate.provider] ?? null;
  const view = exchange.hosts!.find((v) => v.host === host.url)!;
  return { adapter: host.adapter, health: host.health, host, view };
}

/**
 * The last candidate was local and could not take the request (unreachable, timed out, busy, failing).
 * A request that may not leave the host gets the answer decide() gives once the health probe has seen
 * the same thing, so the client's answer does not depend on which of the two noticed first.
 */
function localUnavailable(exchange: Exchange, error: UpstreamError): RouterError {
  const classification = exchange.contract?.classification;
  if (classification !== "SENSITIVE" && classification !== "SECRET") return toRouterError(error);
  return new RouterError(
    503,
    `LOCAL_UNAVAILABLE_FOR_${classification}`,
    `${classification} requests run only on the local host, which cannot take this request now (${error.code}); retry when GET /readyz reports ready`,
    { failureType: "provider_error", stage: "execute" },
  );
}

function toRouterError(error: UpstreamError): RouterError {
  const failureType = error.code === "UPSTREAM_STREAM_CUT" ? "upstream_stream_cut" : "provider_error";
  const clientFault = error.status >= 400 && error.status < 500 && error.status !== 429;
  return new RouterError(error.status, error.code, error.message, {
    type: error.type,
    param: error.param,
    failureType: clientFault ? "validation_error" : failureType,
    stage: "execute",
    shouldRetry: !clientFault,
    retryAfter: error.retryAfter,
  });
}

function recordLocalFailure(health: HealthGate, error: UpstreamError): void {
  if (error.code === "UPSTREAM_CONNECT_FAILED") health.recordFailure("connect");
  else if (error.code === "UPSTREAM_TIMEOUT") health.recordFailure("timeout");
  else if (error.code === "UPSTREAM_BUSY") health.recordFailure("busy");
  else if ((error.upstreamStatus ?? 0) >= 500) health.recordFailure("server_error");
}
