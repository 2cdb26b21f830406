/**
 * Maps upstream failures (HTTP statuses, error bodies, connect errors, timeouts, aborts) to
 * `UpstreamError`s that say what our client should see and whether the next candidate may try.
 * Shared by every provider adapter.
 */
import { type ProviderName, UpstreamError } from "./types.ts";

const LABELS: Record<ProviderName, string> = { local: "ollama", openai: "openai", anthropic: "anthropic" };

/** Reads seconds from `retry-after-ms` or `retry-after` (seconds or an HTTP date); undefined when absent. */
export function parseRetryAfter(headers: Headers, now: number = Date.now()): number | undefined {
  const ms = headers.get("retry-after-ms");
  if (ms !== null && ms.trim() !== "" && Number.isFinite(Number(ms))) {
    return Math.max(0, Math.ceil(Number(ms) / 1000));
  }
  const value = headers.get("retry-after");
  if (value === null || value.trim() === "") return undefined;
  if (Number.isFinite(Number(value))) return Math.max(0, Math.ceil(Number(value)));
  const date = Date.parse(value);
  if (Number.isNaN(date)) return undefined;
  return Math.max(0, Math.ceil((date - now) / 1000));
}

interface BodyError {
  message: string | null;
  type: string | null;
  code: string | null;
  param: string | null;
}

/** Pulls message/type/code/param out of an OpenAI, Anthropic or Ollama error body (or plain text). */
export function readErrorBody(body: unknown): BodyError {
  const out: BodyError = { message: null, type: null, code: null, param: null };
  const str = (v: unknown) => (typeof v === "string" && v !== "" ? v : null);
  if (typeof body === "string") {
    out.message = str(body.trim().slice(0, 500));
    return out;
  }
  if (body === null || typeof body !== "object") return out;
  const err = (body as Record<string, unknown>).error;
  if (typeof err === "string") {
    out.message = str(err);
  } else if (err !== null && typeof err === "object") {
    const e = err as Record<string, unknown>;
    out.message = str(e.message);
    out.type = str(e.type);
    out.code = str(e.code);
    out.param = str(e.param);
  } else {
    out.message = str((body as Record<string, unknown>).message);
  }
  return out;
}

/** Removes API-key-looking strings (and any given secrets) from an upstream message. */
export function scrubSecrets(message: string, secrets: string[] = []): string {
  let out = message;
  for (const secret of secrets) {
    if (secret.length >= 4) out = out.split(secret).join("[redacted]");
  }
  out = out.replace(/\b(sk-[A-Za-z0-9_\-*.]{4,}|sk-ant-[A-Za-z0-9_\-*.]{4,})/g, "[redacted]");
  // Our messages are one sentence without a trailing period, even when they quote an upstream's.
  return out.trim().replace(/[.\s]+$/, "");
}

/** Maps an upstream HTTP error (status, parsed body, headers) to the error our client sees. */
export function upstreamHttpError(
  provider: ProviderName,
  status: number,
  body: unknown,
  headers: Headers,
  options: { secrets?: string[] } = {},
): UpstreamError {
  const label = LABELS[provider];
  const parsed = readErrorBody(body);
  const upstreamMessage = scrubSecrets(parsed.message ?? `http status ${status}`, options.secrets);
  const retryAfter = parseRetryAfter(headers);
  const base = { upstreamStatus: status, param: parsed.param };

  if (status === 400 || status === 404 || status === 413 || status === 422) {
    const code = status === 404
      ? "UPSTREAM_NOT_FOUND"
      : status === 413
      ? "UPSTREAM_REQUEST_TOO_LARGE"
      : "UPSTREAM_INVALID_REQUEST";
    return new UpstreamError(`${label} rejected the request: ${upstreamMessage}`, {
      ...base,
      status,
      code,
      type: "invalid_request_error",
      fallback: false,
    });
  }
  if (status === 401 || status === 403) {
    // The client's request is not at fault: our credentials are. Never echo the upstream's message,
    // which may quote part of the key.
    return new UpstreamError(`${label} rejected the router's credentials; check its api key`, {
      ...base,
      param: null,
      status: 502,
      code: "UPSTREAM_AUTH_FAILED",
      type: "server_error",
      fallback: true,
    });
  }
  if (status === 408) {
    return new UpstreamError(`${label} timed out the request; retry later`, {
      ...base,
      status: 504,
      code: "UPSTREAM_TIMEOUT",
      type: "server_error",
      fallback: true,
      retryAfter,
    });
  }
  if (status === 429) {
    const quota = parsed.code === "insufficient_quota" || parsed.type === "insufficient_quota";
    if (quota) {
      return new UpstreamError(`${label} quota is exhausted; add credit to the router's account`, {
        ...base,
        status: 502,
        code: "UPSTREAM_QUOTA_EXHAUSTED",
        type: "server_error",
        fallback: true,
      });
    }
    return new UpstreamError(`${label} rate limit reached: ${upstreamMessage}`, {
      ...base,
      status: 429,
      code: "UPSTREAM_RATE_LIMITED",
      type: "rate_limit_error",
      fallback: true,
      retryAfter,
    });
  }
  if (status === 529) {
    return new UpstreamError(`${label} is overloaded; retry later`, {
      ...base,
      status: 503,
      code: "UPSTREAM_OVERLOADED",
      type: "server_error",
      fallback: true,
      retryAfter,
    });
  }
  if (status === 503 && provider === "local" && /server busy/i.test(parsed.message ?? "")) {
    return new UpstreamError("ollama is busy (its request queue is full); retry later", {
      ...base,
      status: 503,
      code: "UPSTREAM_BUSY",
      type: "server_error",
      fallback: true,
      retryAfter,
    });
  }
  if (status === 504) {
    return new UpstreamError(`${label} gateway timed out; retry later`, {
      ...base,
      status: 504,
      code: "UPSTREAM_TIMEOUT",
      type: "server_error",
      fallback: true,
      retryAfter,
    });
  }
  if (status >= 500) {
    return new UpstreamError(`${label} failed with status ${status}: ${upstreamMessage}`, {
      ...base,
      param: null,
      status: status === 503 ? 503 : 502,
      code: "UPSTREAM_UNAVAILABLE",
      type: "server_error",
      fallback: true,
      retryAfter,
    });
  }
  // Other 4xx (405, 409, 410, …) mean the router spoke the protocol wrongly, not the client.
  return new UpstreamError(`${label} refused the call with status ${status}: ${upstreamMessage}`, {
    ...base,
    param: null,
    status: 502,
    code: "UPSTREAM_REJECTED",
    type: "server_error",
    fallback: status === 409,
  });
}

/** The error for a stream that ended without its terminal event (Ollama `done:true`, `[DONE]`, `message_stop`). */
export function streamCutError(provider: ProviderName): UpstreamError {
  return new UpstreamError(`${LABELS[provider]} closed the stream before it finished; retry the request`, {
    status: 502,
    code: "UPSTREAM_STREAM_CUT",
    type: "server_error",
    fallback: false,
  });
}

/** The error for a failure the upstream reported inside a stream that had already begun. */
export function streamError(
  provider: ProviderName,
  message: string,
  options: { secrets?: string[]; upstreamType?: string } = {},
): UpstreamError {
  const text = scrubSecrets(message, options.secrets);
  return new UpstreamError(`${LABELS[provider]} failed mid-stream: ${text}`, {
    status: 502,
    code: "UPSTREAM_STREAM_ERROR",
    type: "server_error",
    fallback: false,
  });
}

/** The error for a 200 answer whose body is an error object (nothing reached the client yet, so fallback). */
export function answerError(
  provider: ProviderName,
  message: string,
  options: { secrets?: string[] } = {},
): UpstreamError {
  return new UpstreamError(
    `${LABELS[provider]} answered with an error: ${scrubSecrets(message, options.secrets)}`,
    {
      status: 502,
      code: "UPSTREAM_UNAVAILABLE",
      type: "server_error",
      fallback: true,
    },
  );
}

/**
 * A request field the chosen provider cannot honour, refused by name before any call. Fallback-worthy: the
 * next candidate may honour it; as the last candidate, the client gets this 400 `UNSUPPORTED_FIELD`.
 */
export function unsupportedFieldError(param: string, message: string): UpstreamError {
  return new UpstreamError(message, {
    status: 400,
    code: "UNSUPPORTED_FIELD",
    type: "invalid_request_error",
    fallback: true,
    param,
  });
}

/** The error for the caller's own abort (client went away or the router gave up). */
export function clientAbortedError(): UpstreamError {
  return new UpstreamError("the client closed the request before the answer ended", {
    status: 499,
    code: "CLIENT_ABORTED",
    type: "invalid_request_error",
    fallback: false,
  });
}

/** The error for an upstream that took too long: to its first event, between two events, or overall. */
function timeoutError(
  provider: ProviderName,
  options: { stage: "first_byte" | "idle" | "total"; fallback: boolean },
): UpstreamError {
  const what = options.stage === "first_byte"
    ? "did not start answering in time"
    : options.stage === "idle"
    ? "stalled between two events of its answer"
    : "did not finish in time";
  return new UpstreamError(`${LABELS[provider]} ${what}; retry later or raise the timeout`, {
    status: 504,
    code: "UPSTREAM_TIMEOUT",
    type: "server_error",
    fallback: options.fallback,
  });
}

/** Marks the reason a call's signal aborted because its total time ran out. */
export const TOTAL_TIMEOUT = "upstream total timeout";
/** Marks the reason a call's signal aborted because no first event (or whole JSON answer) came in time. */
export const FIRST_BYTE_TIMEOUT = "upstream first-byte timeout";
/** Marks the reason a call's signal aborted because a stream paused too long between events. */
export const IDLE_TIMEOUT = "upstream stream idle timeout";

/** True for the reason a call's deadline aborted it with. */
function isDeadline(reason: unknown): boolean {
  return reason === FIRST_BYTE_TIMEOUT || reason === IDLE_TIMEOUT || reason === TOTAL_TIMEOUT ||
    (reason instanceof DOMException && reason.name === "TimeoutError");
}

/**
 * Maps any failure while calling or reading an upstream to an `UpstreamError`. `stage` says how far the
 * call got: `connect` (no headers yet), `body` (reading a non-streamed answer: nothing reached the
 * client, so the next candidate may still try) or `stream` (bytes may have reached the client, so
 * nothing is fallback-worthy).
 */
export function upstreamFailure(
  provider: ProviderName,
  error: unknown,
  options: {
    signal: AbortSignal;
    stage?: "connect" | "body" | "stream";
    callSignal?: AbortSignal;
  },
): UpstreamError {
  if (error instanceof UpstreamError) return error;
  const reason = options.callSignal?.aborted ? options.callSignal.reason : undefined;
  // With the caller's own controller as the call's, a deadline aborts the caller's signal too.
  if (options.signal.aborted && !isDeadline(reason)) return clientAbortedError();
  const stage = options.stage ?? "connect";
  if (reason === FIRST_BYTE_TIMEOUT) return timeoutError(provider, { stage: "first_byte", fallback: true });
  if (reason === IDLE_TIMEOUT) return timeoutError(provider, { stage: "idle", fallback: stage !== "stream" });
  if (reason === TOTAL_TIMEOUT || (reason instanceof DOMException && reason.name === "TimeoutError")) {
    return timeoutError(provider, { stage: "total", fallback: stage !== "stream" });
  }
  if (stage === "connect") {
    return new UpstreamError(
      `could not connect to ${LABELS[provider]}; check that it is running and reachable`,
      {
        status: 502,
        code: "UPSTREAM_CONNECT_FAILED",
        type: "server_error",
        fallback: true,
      },
    );
  }
  if (stage === "body") {
    return new UpstreamError(
      `${LABELS[provider]} sent an incomplete or malformed answer; retry the request`,
      {
        status: 502,
        code: "UPSTREAM_BAD_RESPONSE",
        type: "server_error",
        fallback: true,
      },
    );
  }
  if (error instanceof SyntaxError) {
    return streamError(provider, "the upstream sent a malformed stream line");
  }
  return streamCutError(provider);
}
