/**
 * How a request ends: its record handed to the writer (once), made durable before the client sees the
 * end of its answer, the error answer when it failed, and the metrics and log line of the answer.
 * @module
 */
import type { Dialect } from "./dialects.ts";
import { RouterError } from "./errors.ts";
import { decisionHeaders } from "./reasons.ts";
import type { ClientErrorInfo, ClientResponseMeta } from "../inbound/mod.ts";
import type { Pipeline } from "./context.ts";
import type { Exchange } from "./exchange.ts";

export const JSON_HEADERS = { "content-type": "application/json" };

/** Makes the record durable; a record that cannot be written fails the request closed. */
export async function durable(pipeline: Pipeline, exchange: Exchange): Promise<void> {
  try {
    await commit(pipeline, exchange);
    pipeline.deps.metrics.countEdr("written");
  } catch (error) {
    edrLost(pipeline, exchange, error);
    throw edrFailure();
  }
}

/** Commits the record of a stream that can no longer report to its client; a failure is logged. */
export async function commitQuietly(pipeline: Pipeline, exchange: Exchange, status: number): Promise<void> {
  await commit(pipeline, exchange).catch((error) => edrLost(pipeline, exchange, error));
  observe(pipeline, exchange, status);
}

/** Hands the record to the writer; from then on the request no longer counts as in flight. */
function commit(pipeline: Pipeline, exchange: Exchange): Promise<unknown> {
  try {
    return exchange.commit(pipeline.deps.edr, pipeline.policyRef);
  } finally {
    // Once, even when building the record threw and the request path commits again.
    if (exchange.inFlight) {
      exchange.inFlight = false;
      pipeline.inFlight.count--;
    }
  }
}

function edrLost(pipeline: Pipeline, exchange: Exchange, error: unknown): void {
  pipeline.deps.metrics.countEdr("failed");
  const name = error instanceof Error ? error.name : typeof error;
  // While the writer is degraded it refuses every commit; it logged the disk error once already.
  if (name === "EdrUnavailableError") return;
  pipeline.deps.log(`edr write failed (${name}) request_id=${exchange.requestId}; the request failed closed`);
}

/** Records the failure, makes the record durable and answers with the error. */
export async function fail(
  pipeline: Pipeline,
  exchange: Exchange,
  dialect: Dialect,
  error: RouterError,
): Promise<Response> {
  exchange.fail(error);
  try {
    await durable(pipeline, exchange);
  } catch (edrError) {
    // A refusal because records cannot be written says so itself; its own record is lost the same way.
    return errorResponse(
      pipeline,
      exchange,
      dialect,
      error.code === "EDR_UNAVAILABLE" ? error : edrError as RouterError,
    );
  }
  return errorResponse(pipeline, exchange, dialect, error);
}

/** The error answer in the client's dialect. */
export function errorResponse(
  pipeline: Pipeline,
  exchange: Exchange,
  dialect: Dialect,
  error: RouterError,
): Response {
  const headers = answerHeaders(exchange, dialect, JSON_HEADERS);
  headers["x-should-retry"] = String(error.shouldRetry);
  // The reason code, for clients whose SDK hides the error body's `code`.
  headers["x-hi-reason"] = error.code;
  if (error.retryAfter !== undefined) headers["retry-after"] = String(error.retryAfter);
  observe(pipeline, exchange, error.status);
  return new Response(JSON.stringify(dialect.errorBody(error)), { status: error.status, headers });
}

/** An answer's headers: `base`, the request id as the client's SDK reads it, and the decision headers. */
export function answerHeaders(
  exchange: Exchange,
  dialect: Dialect,
  base: Record<string, string>,
): Record<string, string> {
  const id = exchange.requestId;
  return decisionHeaders(exchange, { ...base, "x-request-id": id, ...dialect.headers(id) });
}

/** What the client's answer says of itself: its id, when it was made, and the model that answered. */
export function answerMeta(exchange: Exchange, dialect: Dialect, model: string): ClientResponseMeta {
  return {
    id: dialect.responseId(exchange.requestId),
    created: Math.floor(exchange.receivedAtMs / 1000),
    model,
  };
}

/** The answer's metrics, log line and spans. */
export function observe(pipeline: Pipeline, exchange: Exchange, status: number): void {
  const served = exchange.served;
  const rejected = exchange.attempts.length === 0 && status >= 400;
  pipeline.deps.metrics.observeRequest({
    endpoint: exchange.endpoint,
    provider: served?.provider ?? "none",
    outcome: status >= 400
      ? (rejected ? "rejected" : "failed")
      : exchange.servedFirstCandidate()
      ? "primary"
      : "fallback",
    status,
    durationSeconds: (performance.now() - exchange.startedAt) / 1000,
  });
  pipeline.deps.observer?.answered(exchange, status);
}

/** What a client's SDK reads of an error (an error event's body). */
export function errorInfo(error: RouterError): ClientErrorInfo {
  return { message: error.message, type: error.type, code: error.code, status: error.status };
}

/** The answer when a record could not be made durable. */
export function edrFailure(): RouterError {
  return new RouterError(
    503,
    "EDR_WRITE_FAILED",
    "the decision record could not be made durable, so the request failed closed; retry later",
    {
      failureType: "uncaught_exception",
      stage: "respond",
    },
  );
}
