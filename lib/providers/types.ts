/**
 * The router's canonical shapes. Inbound requests (OpenAI chat or Anthropic Messages) become a
 * `ChatRequest`; every provider adapter turns a `ChatRequest` into its wire format and its answer back
 * into a `ChatResult` or a stream of `StreamEvent`s. Nothing outside an adapter knows a wire shape.
 */

/** Where a candidate runs: the local Ollama host or one of the cloud providers (lib/config/providers.ts). */
export type { ProviderName } from "../config/mod.ts";
import type { ProviderName } from "../config/mod.ts";

/** The wire protocol an adapter speaks, recorded in the EDR's `decision.protocol`. */
export type WireProtocol = "ollama_chat" | "openai_chat" | "anthropic_messages";

/** A text or image part of a user message (OpenAI's content-part shape). */
export type ContentPart =
  | { type: "text"; text: string }
  | { type: "image_url"; image_url: { url: string; detail?: "auto" | "low" | "high" } };

/** A tool call made by the assistant; `arguments` is a JSON string, as in OpenAI's format. */
export interface ToolCall {
  id: string;
  type: "function";
  function: { name: string; arguments: string };
}

/** A tool the model may call. */
export interface ToolDefinition {
  type: "function";
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean };
}

/** How the model may use tools. */
export type ToolChoice = "none" | "auto" | "required" | { type: "function"; function: { name: string } };

/** One conversation turn in OpenAI's chat shape. */
export type ChatMessage =
  | { role: "system" | "developer"; content: string | ContentPart[]; name?: string }
  | { role: "user"; content: string | ContentPart[]; name?: string }
  | { role: "assistant"; content: string | ContentPart[] | null; name?: string; tool_calls?: ToolCall[] }
  | { role: "tool"; content: string | ContentPart[]; tool_call_id: string; name?: string };

/** Structured-output request, as OpenAI spells it. */
export type ResponseFormat =
  | { type: "text" }
  | { type: "json_object" }
  | {
    type: "json_schema";
    json_schema: { name: string; schema?: Record<string, unknown>; strict?: boolean };
  };

/** How much the model should reason before answering (OpenAI's `reasoning_effort`). */
export type ReasoningEffort = "none" | "minimal" | "low" | "medium" | "high" | "xhigh";

/** Anthropic's extended-thinking switch, carried as the client sent it on `/v1/messages`. */
export type ThinkingConfig =
  | { type: "enabled"; budget_tokens: number }
  | { type: "disabled" }
  | { type: "adaptive" };

/** OpenAI's predicted output: text most of the answer is expected to repeat (a speed hint). */
export interface Prediction {
  type: "content";
  content: string | { type: "text"; text: string }[];
}

/**
 * Request fields only OpenAI defines, sent as they came when OpenAI serves; decide() routes a request
 * that sets one to a provider that honours it (docs/protocols.md).
 */
export interface OpenAIRequestFields {
  logit_bias?: Record<string, number>;
  metadata?: Record<string, string>;
  modalities?: "text"[];
  prediction?: Prediction;
  prompt_cache_key?: string;
  safety_identifier?: string;
  service_tier?: "auto" | "default" | "flex" | "scale" | "priority";
  store?: boolean;
  verbosity?: "low" | "medium" | "high";
}

/** The canonical request: OpenAI chat completions, without the router's own extension fields. */
export interface ChatRequest extends OpenAIRequestFields {
  model?: string;
  messages: ChatMessage[];
  temperature?: number;
  top_p?: number;
  n?: number;
  stream?: boolean;
  stream_options?: { include_usage?: boolean };
  stop?: string | string[];
  max_tokens?: number;
  max_completion_tokens?: number;
  seed?: number;
  presence_penalty?: number;
  frequency_penalty?: number;
  user?: string;
  tools?: ToolDefinition[];
  tool_choice?: ToolChoice;
  parallel_tool_calls?: boolean;
  response_format?: ResponseFormat;
  /** OpenAI `reasoning_effort`; Ollama gets `think` from it (docs/protocols.md, "Ollama"). */
  reasoning_effort?: ReasoningEffort;
  /** Anthropic `thinking`; Ollama gets `think` from it (docs/protocols.md, "Ollama"). */
  thinking?: ThinkingConfig;
  /** OpenAI `logprobs`: only OpenAI can honour it; its answer's logprobs pass through. */
  logprobs?: boolean;
  /** OpenAI `top_logprobs` (0–20), with `logprobs`. */
  top_logprobs?: number;
  /** Anthropic `top_k` (from `/v1/messages`): Ollama `options.top_k`; OpenAI has none, so decide() routes it. */
  top_k?: number;
}

/** Why the model stopped, in OpenAI's vocabulary. */
export type FinishReason = "stop" | "length" | "tool_calls" | "content_filter";

/** Token counts in OpenAI's vocabulary. */
export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/**
 * Token counts beyond the three the EDR records, when the upstream reports them. Kept apart from `Usage`
 * so the record's usage stays exactly the three counts its schema names.
 */
export interface UsageDetails {
  /** Prompt tokens read from the provider's prompt cache (OpenAI `cached_tokens`, Anthropic cache reads). */
  cached_tokens?: number;
  /** Prompt tokens written to the provider's prompt cache (Anthropic `cache_creation_input_tokens`). */
  cache_creation_tokens?: number;
  /** Completion tokens spent reasoning (OpenAI `reasoning_tokens`). */
  reasoning_tokens?: number;
}

/** OpenAI's per-choice `logprobs` object (`content` and `refusal` token lists), passed through as sent. */
export type ChoiceLogprobs = Record<string, unknown>;

/** A complete (non-streamed) answer from any provider. */
export interface ChatResult {
  /** The upstream's response id when it gave one (transport detail; not part of the output hash). */
  upstream_id?: string;
  model: string;
  content: string | null;
  tool_calls: ToolCall[];
  finish_reason: FinishReason;
  usage: Usage;
  /** Ollama's model digest or similar weight pin, when the upstream reports it. */
  model_digest?: string;
  /** The model's reasoning text (Ollama `message.thinking`); not answer content, not in the output hash. */
  reasoning?: string;
  /**
   * Anthropic's signature of that reasoning (its thinking block), which an Anthropic client must send back
   * unchanged with the block in a tool-use loop; absent when nothing signed it (a local model).
   */
  reasoning_signature?: string;
  /** The model's refusal text, when the upstream gave one (OpenAI `message.refusal`). */
  refusal?: string;
  /** Token logprobs, when the client asked and the upstream gave them (OpenAI `choices[0].logprobs`). */
  logprobs?: ChoiceLogprobs;
  /** Cache and reasoning token counts, when the upstream reports them. */
  usage_details?: UsageDetails;
  /** Why the answer ended, beyond the four OpenAI finish reasons, when the upstream said (Anthropic). */
  stop_detail?: StopDetail;
}

/**
 * What an Anthropic `stop_reason` says that OpenAI's `finish_reason` cannot: the stop sequence that
 * matched (`stop_sequence`) and a paused long turn (`pause_turn`, finish reason `stop`).
 */
export interface StopDetail {
  /** The stop sequence that ended the answer. */
  stop_sequence?: string;
  /** True for Anthropic `pause_turn`: send the answer back as it is to let the model go on. */
  paused?: boolean;
}

/**
 * One event of a streamed answer. Tool-call `index` is the position among tool calls (0, 1, …), not an
 * upstream block index. A stream always ends with exactly one `finish` event; an upstream failure after
 * the stream began is thrown from the stream as an `UpstreamError`, never turned into a `finish`.
 * `reasoning` pieces (the model thinking, e.g. Ollama `message.thinking`) come before the answer text
 * they lead to and are not answer content; `refusal` pieces are the model's refusal text (OpenAI
 * `delta.refusal`). A text piece carries `logprobs` when the client asked and the upstream gave them.
 * A `reasoning` piece may carry Anthropic's `signature` of its thinking block (on the block's last piece).
 * `prompt_usage` is the upstream's exact prompt count when it reports one before the answer (Anthropic
 * `message_start`); it comes right before the first piece of the answer, never alone.
 */
export type StreamEvent =
  | { type: "text"; text: string; logprobs?: ChoiceLogprobs }
  | { type: "reasoning"; text: string; signature?: string }
  | { type: "refusal"; text: string }
  | { type: "tool_call_start"; index: number; id: string; name: string }
  | { type: "tool_call_args"; index: number; fragment: string }
  | { type: "prompt_usage"; usage: Usage; usage_details?: UsageDetails }
  | {
    type: "finish";
    finish_reason: FinishReason;
    usage: Usage | null;
    usage_details?: UsageDetails;
    stop_detail?: StopDetail;
  };

/** What an adapter needs for one call. */
export interface CallOptions {
  /** Provider-side model name. */
  model: string;
  /** Aborted when the client disconnects or the router gives up. */
  signal: AbortSignal;
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
