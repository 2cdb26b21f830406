/**
 * The router's canonical chat shapes, which both sides speak: an inbound dialect (lib/inbound) turns a
 * client's request into a `ChatRequest` and encodes a `ChatResult` or `StreamEvent`s back into its wire
 * format; a provider adapter (lib/providers) turns a `ChatRequest` into its upstream's body and that
 * upstream's answer into a `ChatResult` or `StreamEvent`s. This module imports nothing, so
 * inbound and providers meet here without importing each other.
 */

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

/**
 * The client's own body, kept on the canonical request it was translated into when the client spoke a
 * provider's native dialect (under a symbol, so it is neither serialized, nor hashed, nor sent to another
 * upstream): when that provider serves, its adapter sends the body as it came, so nothing is lost in
 * translation. The inbound dialect validated it; the provider reads it as its own wire type.
 */
const NATIVE_BODY: unique symbol = Symbol("native request body");

/** A client's body in one provider's wire protocol, as its inbound dialect validated it. */
export interface NativeBody {
  protocol: WireProtocol;
  body: object;
}

/** Keeps `body` (spoken in `protocol`) on `request`, out of its serialized form; returns `request`. */
export function attachNativeBody(request: ChatRequest, protocol: WireProtocol, body: object): ChatRequest {
  const native: NativeBody = { protocol, body };
  Object.defineProperty(request, NATIVE_BODY, { value: native, enumerable: false });
  return request;
}

/** The client's own body behind a canonical request, when it spoke `protocol`; undefined otherwise. */
export function nativeBody(request: ChatRequest, protocol: WireProtocol): object | undefined {
  const native = (request as { [NATIVE_BODY]?: NativeBody })[NATIVE_BODY];
  return native?.protocol === protocol ? native.body : undefined;
}
