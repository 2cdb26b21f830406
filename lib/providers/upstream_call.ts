/**
 * One upstream call under its deadlines: the request, the first-byte, idle-gap and total deadlines on one
 * abort controller, and the reads of its answer. Shared by every provider adapter.
 */
import { type Deadline, deadlineAfter } from "./deadlines.ts";
import {
  clientAbortedError,
  FIRST_BYTE_TIMEOUT,
  IDLE_TIMEOUT,
  TOTAL_TIMEOUT,
  upstreamFailure,
  upstreamHttpError,
} from "./http_errors.ts";
import type { UpstreamFetch, UpstreamInit, UpstreamResponse } from "./http1_client.ts";
import type { CallOptions, ProviderName } from "./types.ts";

/** Options for `upstreamCall` beyond the call's own `CallOptions`. */
export interface UpstreamFetchOptions extends CallOptions {
  /** Which provider is being called, for error mapping. */
  provider: ProviderName;
  /** The transport to use (the server passes its HTTP/1.1 agent; tests inject fakes); defaults to the global fetch. */
  fetch?: UpstreamFetch;
  /** Secrets (API keys) to scrub from any upstream message before it reaches the client. */
  secrets?: string[];
}

/** Reads a started call's whole JSON answer; a cut or malformed body is a fallback-worthy failure. */
export async function readJsonAnswer<T>(
  provider: ProviderName,
  call: UpstreamCall,
  options: CallOptions,
): Promise<T> {
  try {
    const answer = await call.response.json() as T;
    call.onEvent();
    return answer;
  } catch (error) {
    throw upstreamFailure(provider, error, {
      signal: options.signal,
      stage: "body",
      callSignal: call.signal,
    });
  }
}

/** A started upstream call: the 2xx response and the signal its body is read under. */
export interface UpstreamCall {
  response: UpstreamResponse;
  /** Aborts on the caller's signal or a timeout; pass it to `upstreamFailure` as `callSignal`. */
  signal: AbortSignal;
  /**
   * Say that an event of the answer arrived (for JSON: the whole answer). The first call ends the
   * first-byte deadline; from then on, a gap of `streamIdleTimeoutMs` without a call aborts the call.
   */
  onEvent: () => void;
}

/**
 * Runs an upstream fetch under the call's timeouts and the caller's signal. Resolves with the 2xx response
 * and the call's combined signal, so body-read failures can be told apart (caller abort, total timeout,
 * cut); rejects with an `UpstreamError` for connect errors, timeouts, aborts and non-2xx statuses.
 */
export async function upstreamCall(
  url: string,
  init: UpstreamInit,
  options: UpstreamFetchOptions,
): Promise<UpstreamCall> {
  if (options.signal.aborted) throw clientAbortedError();
  // One controller per call, aborted by the caller or a deadline, with the reason telling which: the
  // caller's own when it made one for this call (the router's attempt), else one made here that follows
  // the caller's signal. AbortSignal.any() would do the same, but its dependent signals cost too much CPU
  // per proxied request (docs/architecture.md).
  const call = options.controller ?? new AbortController();
  const onCallerAbort = options.controller === undefined ? () => call.abort(options.signal.reason) : null;
  if (onCallerAbort !== null) options.signal.addEventListener("abort", onCallerAbort, { once: true });
  // The total deadline does not keep the process alive, so a call nobody ends never does; the caller's
  // signal ends it.
  const total = deadlineAfter(options.totalTimeoutMs, () => call.abort(TOTAL_TIMEOUT), { keepAlive: false });
  // Headers alone prove little (an upstream can send them and stall): the first-byte deadline runs until
  // the first event of the answer, or the whole of a JSON one.
  const firstByte = deadlineAfter(options.firstByteTimeoutMs, () => call.abort(FIRST_BYTE_TIMEOUT));
  const idle = new IdleWatch(options.streamIdleTimeoutMs, () => call.abort(IDLE_TIMEOUT));
  call.signal.addEventListener("abort", () => {
    total.cancel();
    firstByte.cancel();
    idle.stop();
    if (onCallerAbort !== null) options.signal.removeEventListener("abort", onCallerAbort);
  }, { once: true });
  const signal = call.signal;
  let started = false;
  const onEvent = () => {
    if (started) {
      idle.touch();
      return;
    }
    started = true;
    firstByte.cancel();
    idle.start();
  };
  let response: UpstreamResponse;
  try {
    response = await (options.fetch ?? fetch)(url, { ...init, signal });
  } catch (error) {
    firstByte.cancel();
    throw upstreamFailure(options.provider, error, {
      signal: options.signal,
      stage: "connect",
      callSignal: signal,
    });
  }
  if (response.ok) return { response, signal, onEvent };
  let body: unknown = null;
  try {
    const text = await response.text();
    try {
      body = JSON.parse(text);
    } catch {
      body = text;
    }
  } catch (error) {
    throw upstreamFailure(options.provider, error, {
      signal: options.signal,
      stage: "body",
      callSignal: signal,
    });
  } finally {
    firstByte.cancel();
  }
  throw upstreamHttpError(options.provider, response.status, body, response.headers, {
    secrets: options.secrets,
  });
}

/**
 * The idle-gap deadline of a stream. Events only stamp the time; the one pending deadline, when due,
 * compares that stamp with the limit and either fires or waits out the rest, so a fast stream costs a
 * clock read per event rather than a deadline.
 */
class IdleWatch {
  #limitMs: number | undefined;
  #fire: () => void;
  #last = 0;
  #pending: Deadline | null = null;
  #stopped = false;

  constructor(limitMs: number | undefined, fire: () => void) {
    this.#limitMs = limitMs;
    this.#fire = fire;
  }

  start(): void {
    if (this.#limitMs === undefined || this.#stopped) return;
    this.#last = performance.now();
    this.#arm(this.#limitMs);
  }

  touch(): void {
    this.#last = performance.now();
  }

  stop(): void {
    this.#stopped = true;
    this.#pending?.cancel();
    this.#pending = null;
  }

  #arm(ms: number): void {
    this.#pending = deadlineAfter(ms, () => {
      this.#pending = null;
      if (this.#stopped) return;
      const left = this.#limitMs! - (performance.now() - this.#last);
      if (left <= 0) this.#fire();
      else this.#arm(left);
    }, { keepAlive: false });
  }
}

/** Reads a body to its end after the terminal event so the connection is released, not reset. */
export async function drain(reader: ReadableStreamDefaultReader<unknown>): Promise<void> {
  try {
    while (!(await reader.read()).done) {
      // Nothing after the terminal event matters.
    }
  } catch {
    // The answer is already complete; a late transport error changes nothing.
  }
}
