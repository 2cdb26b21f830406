import type { EdrFailureStage, EdrFailureType } from "../edr/mod.ts";

/** Options for a `RouterError` beyond its status, code and message. */
export interface RouterErrorOptions {
  /** OpenAI error type; derived from the status when absent. */
  type?: string;
  /** The request field to fix, when one is to blame. */
  param?: string | null;
  /** The EDR failure type this error records. */
  failureType: EdrFailureType;
  /** The request stage where it happened. */
  stage: EdrFailureStage;
  /** False when retrying the same request cannot change the answer (sent as `x-should-retry`). */
  shouldRetry?: boolean;
  /** Seconds the client should wait before retrying (sent as `retry-after`). */
  retryAfter?: number;
  /** What the EDR keeps instead of `message`, when the message repeats text the client chose. */
  recordedMessage?: string;
}

/** A failure the client is told about: an OpenAI-shaped error with our stable reason code. */
export class RouterError extends Error {
  readonly status: number;
  readonly code: string;
  readonly type: string;
  readonly param: string | null;
  readonly failureType: EdrFailureType;
  readonly stage: EdrFailureStage;
  readonly shouldRetry: boolean;
  readonly retryAfter?: number;
  /** The message for the EDR (`message` unless the options gave one without client text). */
  readonly recordedMessage: string;

  constructor(status: number, code: string, message: string, options: RouterErrorOptions) {
    super(message);
    this.name = "RouterError";
    this.status = status;
    this.code = code;
    this.type = options.type ?? errorTypeForStatus(status);
    this.param = options.param ?? null;
    this.failureType = options.failureType;
    this.stage = options.stage;
    this.shouldRetry = options.shouldRetry ?? (status === 429 || status >= 500);
    this.retryAfter = options.retryAfter;
    this.recordedMessage = options.recordedMessage ?? message;
  }
}

/** The OpenAI error `type` that goes with an HTTP status. */
export function errorTypeForStatus(status: number): string {
  if (status === 401) return "authentication_error";
  if (status === 403) return "permission_error";
  if (status === 404) return "not_found_error";
  if (status === 429) return "rate_limit_error";
  if (status >= 500) return "server_error";
  return "invalid_request_error";
}

/** The OpenAI-shaped error body (lib/inbound/openai), which the router's own endpoints use too. */
export { openAIErrorBody } from "../inbound/openai/mod.ts";
