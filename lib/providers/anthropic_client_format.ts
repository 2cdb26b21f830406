/**
 * The answers of the router's `/v1/messages` endpoint in Anthropic's own format: the `message` object,
 * the SSE stream, and error bodies. Fields the API omits are omitted here too (no `null` where a client
 * schema expects an array or nothing); counts the upstream reported exactly are passed on exactly.
 */

import { encodeSseEvent } from "./sse.ts";
import type {
  ChatResult,
  ClientErrorInfo,
  ClientResponseMeta,
  ClientStreamEncoder,
  FinishReason,
  StopDetail,
  StreamEvent,
  Usage,
  UsageDetails,
} from "./types.ts";

/** Anthropic's `stop_reason` values the router can give. */
export type AnthropicStopReason =
  | "end_turn"
  | "max_tokens"
  | "stop_sequence"
  | "tool_use"
  | "pause_turn"
  | "refusal";

/**
 * Anthropic's `stop_reason` (and `stop_sequence`) for a canonical finish reason and the upstream's
 * stop detail: a matched stop sequence stays `stop_sequence` with its value, a paused turn `pause_turn`.
 */
export function toAnthropicStop(
  reason: FinishReason,
  detail?: StopDetail,
): { stop_reason: AnthropicStopReason; stop_sequence: string | null } {
  if (reason === "stop" && detail?.paused) return { stop_reason: "pause_turn", stop_sequence: null };
  if (reason === "stop" && detail?.stop_sequence !== undefined) {
    return { stop_reason: "stop_sequence", stop_sequence: detail.stop_sequence };
  }
  return { stop_reason: toAnthropicStopReason(reason), stop_sequence: null };
}

/** Anthropic's `stop_reason` for a canonical finish reason alone. */
export function toAnthropicStopReason(
  reason: FinishReason,
): "end_turn" | "max_tokens" | "tool_use" | "refusal" {
  switch (reason) {
    case "stop":
      return "end_turn";
    case "length":
      return "max_tokens";
    case "tool_calls":
      return "tool_use";
    case "content_filter":
      return "refusal";
  }
}

/**
 * Anthropic's usage object for canonical counts: `input_tokens` is the prompt without cache reads and
 * writes (Anthropic counts those apart), and both cache counts are always present, as the API sends them.
 */
export function toAnthropicUsage(
  usage: Usage,
  details: UsageDetails | undefined,
): {
  input_tokens: number;
  cache_creation_input_tokens: number;
  cache_read_input_tokens: number;
  output_tokens: number;
} {
  const created = details?.cache_creation_tokens ?? 0;
  const read = details?.cached_tokens ?? 0;
  return {
    input_tokens: Math.max(0, usage.prompt_tokens - created - read),
    cache_creation_input_tokens: created,
    cache_read_input_tokens: read,
    output_tokens: usage.completion_tokens,
  };
}

/**
 * A tool call's arguments as an Anthropic `input` object. A model (usually a local one) can emit
 * arguments that are not a JSON object; rather than drop them silently they are handed over under
 * `_raw_arguments`, which a client's tool code will reject visibly.
 */
function toolInput(args: string): Record<string, unknown> {
  if (args.trim() === "") return {};
  try {
    const parsed: unknown = JSON.parse(args);
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
      return parsed as Record<string, unknown>;
    }
  } catch {
    // fall through to the raw form
  }
  return { _raw_arguments: args };
}

/**
 * Anthropic's `message` object for a canonical result (tool-use ids are passed through unchanged). The
 * model's reasoning comes first as a `thinking` block, with Anthropic's `signature` when Anthropic
 * reasoned and an empty one when a local model did (nothing signs it); a refusal's text is a text block under `stop_reason: "refusal"`.
 */
export function toAnthropicResponse(result: ChatResult, meta: ClientResponseMeta): Record<string, unknown> {
  const content: Record<string, unknown>[] = [];
  if (result.reasoning !== undefined && result.reasoning !== "") {
    content.push({
      type: "thinking",
      thinking: result.reasoning,
      signature: result.reasoning_signature ?? "",
    });
  }
  const text = (result.content ?? "") + (result.refusal ?? "");
  if (text !== "") content.push({ type: "text", text });
  for (const call of result.tool_calls) {
    content.push({
      type: "tool_use",
      id: call.id,
      name: call.function.name,
      input: toolInput(call.function.arguments),
    });
  }
  return {
    id: meta.id,
    type: "message",
    role: "assistant",
    model: meta.model,
    content,
    ...toAnthropicStop(result.finish_reason, result.stop_detail),
    usage: toAnthropicUsage(result.usage, result.usage_details),
  };
}

/**
 * Anthropic's error type for an HTTP status and our reason code: 529, and an upstream's own overload
 * (`UPSTREAM_OVERLOADED`), are `overloaded_error`; any other 5xx, 503 refusals included (a SENSITIVE
 * request while the local host is unfit is not an overload elsewhere), is `api_error`; a 4xx has its
 * status's type, `invalid_request_error` for the rest.
 */
export function anthropicErrorType(status: number, code?: string): string {
  if (status === 529 || code === "UPSTREAM_OVERLOADED") return "overloaded_error";
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
  }
  return status >= 500 ? "api_error" : "invalid_request_error";
}

/** Anthropic's error body for a client-side error (`{"type":"error","error":{"type","message"}}`). */
export function anthropicErrorBody(
  info: ClientErrorInfo,
): { type: "error"; error: { type: string; message: string; code: string; param?: string } } {
  // `code` is our reason code, as on /v1/chat/completions; Anthropic's SDKs keep unknown members. `param`
  // names the field a refusal blames, only when there is one.
  const error = { type: anthropicErrorType(info.status, info.code), message: info.message, code: info.code };
  return { type: "error", error: info.param ? { ...error, param: info.param } : error };
}

/** Options for `AnthropicStreamEncoder`. */
export interface AnthropicStreamEncoderOptions {
  /**
   * Prompt tokens to report in `message_start` when the upstream does not say before the answer (an
   * estimate: Ollama and OpenAI report counts only at the end, where `message_delta` carries them).
   */
  inputTokens?: number;
}

type OpenBlock = { index: number; kind: "text" | "thinking" | "tool_use" };

/**
 * Encodes canonical stream events as Anthropic SSE (`event:` line plus a data `type` that matches it).
 * `message_start` goes out with the first piece of the answer, so it carries the upstream's exact prompt
 * count when one came (`prompt_usage`) and the estimate otherwise.
 */
export class AnthropicStreamEncoder implements ClientStreamEncoder {
  #meta: ClientResponseMeta;
  #inputTokens: number;
  #encoder = new TextEncoder();
  #started = false;
  #nextBlock = 0;
  #open: OpenBlock | null = null;
  /** Block index of each tool call, by tool index. */
  #toolBlocks = new Map<number, number>();

  /** Builds an encoder for one answer. */
  constructor(meta: ClientResponseMeta, options: AnthropicStreamEncoderOptions = {}) {
    this.#meta = meta;
    this.#inputTokens = options.inputTokens ?? 0;
  }

  #event(type: string, payload: Record<string, unknown>): string {
    return encodeSseEvent(JSON.stringify({ type, ...payload }), type);
  }

  #messageStart(usage: Record<string, number>): string {
    if (this.#started) return "";
    this.#started = true;
    return this.#event("message_start", {
      message: {
        id: this.#meta.id,
        type: "message",
        role: "assistant",
        model: this.#meta.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage,
      },
    });
  }

  #estimatedStart(): string {
    return this.#messageStart({
      input_tokens: this.#inputTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      output_tokens: 0,
    });
  }

  #closeOpen(): string {
    if (this.#open === null) return "";
    const out = this.#event("content_block_stop", { index: this.#open.index });
    this.#open = null;
    return out;
  }

  /** Opens a block of `kind` unless one is open already; returns its index and the bytes to send. */
  #ensure(kind: "text" | "thinking"): { index: number; out: string } {
    if (this.#open?.kind === kind) return { index: this.#open.index, out: "" };
    let out = this.#closeOpen();
    this.#open = { index: this.#nextBlock++, kind };
    out += this.#event("content_block_start", {
      index: this.#open.index,
      content_block: kind === "text"
        ? { type: "text", text: "" }
        : { type: "thinking", thinking: "", signature: "" },
    });
    return { index: this.#open.index, out };
  }

  /** Nothing yet: `message_start` waits for the first piece of the answer (see the class comment). */
  start(): Uint8Array {
    return new Uint8Array();
  }

  /** Content blocks and deltas for one canonical event. */
  encode(event: StreamEvent): Uint8Array {
    if (event.type === "prompt_usage") {
      const usage = toAnthropicUsage(event.usage, event.usage_details);
      return this.#encoder.encode(this.#messageStart({ ...usage, output_tokens: 0 }));
    }
    let out = this.#estimatedStart();
    switch (event.type) {
      case "text":
      case "refusal":
      case "reasoning": {
        const signature = event.type === "reasoning" ? event.signature : undefined;
        if (event.text === "" && signature === undefined) break;
        const thinking = event.type === "reasoning";
        const block = this.#ensure(thinking ? "thinking" : "text");
        out += block.out;
        if (event.text !== "") {
          out += this.#event("content_block_delta", {
            index: block.index,
            delta: thinking
              ? { type: "thinking_delta", thinking: event.text }
              : { type: "text_delta", text: event.text },
          });
        }
        if (signature !== undefined) {
          out += this.#event("content_block_delta", {
            index: block.index,
            delta: { type: "signature_delta", signature },
          });
        }
        break;
      }
      case "tool_call_start": {
        out += this.#closeOpen();
        this.#open = { index: this.#nextBlock++, kind: "tool_use" };
        this.#toolBlocks.set(event.index, this.#open.index);
        out += this.#event("content_block_start", {
          index: this.#open.index,
          content_block: { type: "tool_use", id: event.id, name: event.name, input: {} },
        });
        break;
      }
      case "tool_call_args": {
        if (event.fragment === "") break;
        // Upstreams send one call's fragments together; if one interleaves, the fragment still goes to
        // its own block, which SDKs accumulate by index.
        const index = this.#toolBlocks.get(event.index);
        if (index === undefined) break;
        out += this.#event("content_block_delta", {
          index,
          delta: { type: "input_json_delta", partial_json: event.fragment },
        });
        break;
      }
      case "finish": {
        out += this.#closeOpen();
        const usage: Record<string, number> = { output_tokens: event.usage?.completion_tokens ?? 0 };
        if (event.usage) {
          const full = toAnthropicUsage(event.usage, event.usage_details);
          usage.input_tokens = full.input_tokens;
          usage.cache_creation_input_tokens = full.cache_creation_input_tokens;
          usage.cache_read_input_tokens = full.cache_read_input_tokens;
        }
        out += this.#event("message_delta", {
          delta: toAnthropicStop(event.finish_reason, event.stop_detail),
          usage,
        });
        break;
      }
    }
    return this.#encoder.encode(out);
  }

  /** `message_stop`, ending a successful stream. */
  done(): Uint8Array {
    return this.#encoder.encode(this.#estimatedStart() + this.#closeOpen() + this.#event("message_stop", {}));
  }

  /** `event: error`, which Anthropic SDKs raise as an `APIError`. */
  error(info: ClientErrorInfo): Uint8Array {
    return this.#encoder.encode(encodeSseEvent(JSON.stringify(anthropicErrorBody(info)), "error"));
  }
}
