/**
 * What every inbound dialect shares: the identity of one answer, an error as a client must see it, the
 * stream encoder the HTTP layer drives, and the error a request that does not parse becomes.
 */
import type { StreamEvent } from "../canonical/mod.ts";

/** Identity of one answer as the client sees it. */
export interface ClientResponseMeta {
  /** Our response id (e.g. `chatcmpl-<request hex>` or `msg_<request hex>`). */
  id: string;
  /** Unix seconds. */
  created: number;
  /** The model name to show the client (the provider-side model that served). */
  model: string;
}

/** A client-side error as it must appear inside a stream or an error body. */
export interface ClientErrorInfo {
  message: string;
  /** OpenAI error type (`invalid_request_error`, `server_error`, `rate_limit_error`, …). */
  type: string;
  /** Our stable reason code. */
  code: string;
  /** HTTP status the error would have had before the stream began. */
  status: number;
  /** The request field to blame, when one is (`UNSUPPORTED_FIELD`); Anthropic errors carry it beside `code`. */
  param?: string | null;
}

/**
 * Encodes a canonical event stream into a client wire format (OpenAI SSE or Anthropic SSE). The HTTP
 * layer drives it so that it decides when the final event goes out (after the EDR is durable).
 */
export interface ClientStreamEncoder {
  /** Bytes that open the stream (OpenAI role chunk, Anthropic message_start). */
  start(): Uint8Array;
  /** Bytes for one canonical event; may be empty (e.g. nothing to send yet). */
  encode(event: StreamEvent): Uint8Array;
  /** Bytes that end a successful stream (`data: [DONE]`, Anthropic `message_stop`). */
  done(): Uint8Array;
  /** Bytes that end the stream with an error the client's SDK raises. */
  error(info: ClientErrorInfo): Uint8Array;
}

/** Options for an `InboundError` beyond its status, code and message. */
export interface InboundErrorOptions {
  /** The request field to fix, when one is to blame. */
  param?: string | null;
  /** What the EDR keeps instead of `message`, when the message repeats text the client chose. */
  recordedMessage?: string;
}

/**
 * A request a dialect cannot accept (a bad value, a field it refuses): always the client's to fix, so never
 * worth retrying as it is. The HTTP layer turns it into its `RouterError` (a validation failure at parse).
 */
export class InboundError extends Error {
  readonly status: number;
  readonly code: string;
  readonly param: string | null;
  /** The message for the EDR (`message` unless the options gave one without client text). */
  readonly recordedMessage: string;

  constructor(status: number, code: string, message: string, options: InboundErrorOptions = {}) {
    super(message);
    this.name = "InboundError";
    this.status = status;
    this.code = code;
    this.param = options.param ?? null;
    this.recordedMessage = options.recordedMessage ?? message;
  }
}
