/**
 * What every provider adapter shares: the adapter interface, the options of one call, and the error an
 * upstream failure becomes. The chat shapes adapters translate live in lib/canonical.
 */

/** Where a candidate runs: the local Ollama host or one of the cloud providers (lib/config/providers.ts). */
export type { ProviderName } from "../config/mod.ts";
import type { ProviderName } from "../config/mod.ts";
import type { ChatRequest, ChatResult, StreamEvent, WireProtocol } from "../canonical/mod.ts";
export type { WireProtocol } from "../canonical/mod.ts";
/** What an adapter needs for one call. */
export interface CallOptions {
  /** Provider-side model name. */
  model: string;
  /** Aborted when the client disconnects or the router gives up. */
  signal: AbortSignal;
  /**
   * The controller behind `signal`, when the caller made one for this call alone (the router's attempt
   * does): the call's deadlines abort it, each with its own reason, instead of a second controller.
   */
  controller?: AbortController;
  /**
   * Give up (fallback-worthy) when the first event (streams) or the whole answer (JSON) has not arrived in
   * this time; response headers alone do not count.
   */
  firstByteTimeoutMs: number;
  /** Give up when a streamed answer pauses this long between two events; no bound without it. */
  streamIdleTimeoutMs?: number;
  /** Give up when the whole answer took longer than this. */
  totalTimeoutMs: number;
  /** Anthropic requires `max_tokens`; this is the policy's default when the client gave none. */
  defaultMaxTokens: number;
  /** Ollama `keep_alive`, passed through when set. */
  keepAlive?: string | number;
  /** Ollama `options.num_ctx`: the policy's context window for the model (local calls only). */
  contextWindow?: number;
}

/** A provider adapter: one file per provider turns canonical shapes into its wire format and back. */
export interface ProviderAdapter {
  readonly provider: ProviderName;
  readonly protocol: WireProtocol;
  /** Runs a non-streamed call. Rejects with `UpstreamError`. */
  complete(request: ChatRequest, options: CallOptions): Promise<ChatResult>;
  /**
   * Starts a streamed call; resolves once the upstream answered 200 (rejects with `UpstreamError`
   * before that). The returned stream errors with `UpstreamError` on a mid-stream failure or a cut.
   */
  stream(request: ChatRequest, options: CallOptions): Promise<ReadableStream<StreamEvent>>;
}

/** Options for building an `UpstreamError`. */
export interface UpstreamErrorOptions {
  /** HTTP status to give our client. */
  status: number;
  /** Stable reason code, e.g. `UPSTREAM_RATE_LIMITED`. */
  code: string;
  /** OpenAI error type, e.g. `rate_limit_error`, `invalid_request_error`, `server_error`. */
  type: string;
  /** True when the next candidate should be tried (connect error, timeout, 408, 429, 5xx, 529, 401/403). */
  fallback: boolean;
  /** The status the upstream sent, when it sent one. */
  upstreamStatus?: number;
  /** Seconds, from the upstream's retry-after header. */
  retryAfter?: number;
  /** Which request field the upstream blamed, when it said. */
  param?: string | null;
}

/** A failure of an upstream provider, already mapped to what our client should see. */
export class UpstreamError extends Error {
  readonly status: number;
  readonly code: string;
  readonly type: string;
  readonly fallback: boolean;
  readonly upstreamStatus?: number;
  readonly retryAfter?: number;
  readonly param: string | null;

  constructor(message: string, options: UpstreamErrorOptions) {
    super(message);
    this.name = "UpstreamError";
    this.status = options.status;
    this.code = options.code;
    this.type = options.type;
    this.fallback = options.fallback;
    this.upstreamStatus = options.upstreamStatus;
    this.retryAfter = options.retryAfter;
    this.param = options.param ?? null;
  }
}
