/**
 * Anthropic Messages answers → canonical shapes: a whole `message` object → `ChatResult`, and an
 * Anthropic SSE event stream → `StreamEvent`s (one `finish`, or an `UpstreamError`, never both).
 */

import type { SseEvent } from "./sse.ts";
import type {
  ChatResult,
  FinishReason,
  StopDetail,
  StreamEvent,
  ToolCall,
  Usage,
  UsageDetails,
} from "../canonical/mod.ts";
import { UpstreamError } from "./types.ts";
import { drain, scrubSecrets, streamCutError, streamError } from "./upstream_errors.ts";

/** Anthropic's usage counters (a `message`'s `usage`, or a `message_delta`'s). */
export interface AnthropicUsage {
  input_tokens?: number | null;
  output_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_read_input_tokens?: number | null;
}

/** The parts of an Anthropic `message` response the router reads. */
export interface AnthropicResponseMessage {
  id?: string;
  model?: string;
  content?: Array<
    {
      type: string;
      text?: string;
      thinking?: string;
      signature?: string;
      id?: string;
      name?: string;
      input?: unknown;
    }
  >;
  stop_reason?: string | null;
  stop_sequence?: string | null;
  usage?: AnthropicUsage;
}

/** What the canonical finish reason cannot say about an Anthropic `stop_reason`, or undefined. */
export function anthropicStopDetail(
  reason: string | null | undefined,
  sequence: string | null | undefined,
): StopDetail | undefined {
  if (reason === "pause_turn") return { paused: true };
  if (reason === "stop_sequence" && typeof sequence === "string") return { stop_sequence: sequence };
  return undefined;
}

/** Anthropic's cache counts as canonical usage details, or undefined when it reported none. */
export function anthropicUsageDetails(usage: AnthropicUsage | undefined): UsageDetails | undefined {
  const details: UsageDetails = {};
  if (typeof usage?.cache_read_input_tokens === "number") {
    details.cached_tokens = usage.cache_read_input_tokens;
  }
  if (typeof usage?.cache_creation_input_tokens === "number") {
    details.cache_creation_tokens = usage.cache_creation_input_tokens;
  }
  return Object.keys(details).length > 0 ? details : undefined;
}

/** The canonical finish reason for an Anthropic `stop_reason` (`pause_turn` counts as a stop). */
export function fromAnthropicStopReason(
  reason: string | null | undefined,
  hasToolCalls = false,
): FinishReason {
  switch (reason) {
    case "max_tokens":
      return "length";
    case "tool_use":
      return "tool_calls";
    case "refusal":
      return "content_filter";
    case "end_turn":
    case "stop_sequence":
    case "pause_turn":
      return "stop";
  }
  return hasToolCalls ? "tool_calls" : "stop";
}

function count(value: number | null | undefined): number {
  return typeof value === "number" && Number.isFinite(value) ? value : 0;
}

/** Prompt tokens of an Anthropic usage: cache writes and reads are prompt tokens too. */
export function anthropicInputTokens(usage: AnthropicUsage | undefined): number {
  if (usage === undefined) return 0;
  return count(usage.input_tokens) + count(usage.cache_creation_input_tokens) +
    count(usage.cache_read_input_tokens);
}

/** Canonical usage from Anthropic's counters. */
export function fromAnthropicUsage(usage: AnthropicUsage | undefined): Usage {
  const prompt = anthropicInputTokens(usage);
  const completion = count(usage?.output_tokens);
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

/** Translates a whole Anthropic `message` into the canonical result. */
export function fromAnthropicResponse(message: AnthropicResponseMessage, fallbackModel = ""): ChatResult {
  const texts: string[] = [];
  const thoughts: string[] = [];
  const signatures: string[] = [];
  const toolCalls: ToolCall[] = [];
  for (const block of message.content ?? []) {
    if (block.type === "text" && typeof block.text === "string") texts.push(block.text);
    else if (block.type === "thinking" && typeof block.thinking === "string") {
      thoughts.push(block.thinking);
      if (typeof block.signature === "string" && block.signature !== "") signatures.push(block.signature);
    } else if (block.type === "tool_use") {
      toolCalls.push({
        id: block.id ?? `toolu_${toolCalls.length}`,
        type: "function",
        function: { name: block.name ?? "", arguments: JSON.stringify(block.input ?? {}) },
      });
    }
    // redacted thinking and server-tool blocks are not answer content
  }
  const text = texts.join("");
  const result: ChatResult = {
    model: message.model ?? fallbackModel,
    content: text === "" && toolCalls.length > 0 ? null : text,
    tool_calls: toolCalls,
    finish_reason: fromAnthropicStopReason(message.stop_reason, toolCalls.length > 0),
    usage: fromAnthropicUsage(message.usage),
  };
  if (message.id !== undefined) result.upstream_id = message.id;
  const thinking = thoughts.join("");
  if (thinking !== "") result.reasoning = thinking;
  // A signature covers its own block: only a single block's survives the join.
  if (thoughts.length === 1 && signatures.length === 1) result.reasoning_signature = signatures[0];
  const details = anthropicUsageDetails(message.usage);
  if (details) result.usage_details = details;
  const stop = anthropicStopDetail(message.stop_reason, message.stop_sequence);
  if (stop) result.stop_detail = stop;
  return result;
}

/**
 * The error for an Anthropic `event: error` inside a stream. Overload and rate limits keep their own
 * codes so the EDR says what happened; `fallback` is true only while no answer content has been
 * produced, since after that the client may already hold part of the answer.
 */
export function anthropicStreamError(
  body: unknown,
  options: { produced: boolean; secrets?: string[] },
): UpstreamError {
  const error = (body as { error?: { type?: unknown; message?: unknown } } | null)?.error;
  const type = typeof error?.type === "string" ? error.type : "api_error";
  const message = scrubSecrets(typeof error?.message === "string" ? error.message : type, options.secrets);
  if (type === "overloaded_error") {
    return new UpstreamError(`anthropic is overloaded mid-stream: ${message}`, {
      status: 503,
      code: "UPSTREAM_OVERLOADED",
      type: "server_error",
      fallback: !options.produced,
    });
  }
  if (type === "rate_limit_error") {
    return new UpstreamError(`anthropic rate limit reached mid-stream: ${message}`, {
      status: 429,
      code: "UPSTREAM_RATE_LIMITED",
      type: "rate_limit_error",
      fallback: !options.produced,
    });
  }
  const mapped = streamError("anthropic", message, { secrets: options.secrets, upstreamType: type });
  if (options.produced || type !== "api_error") return mapped;
  return new UpstreamError(mapped.message, {
    status: mapped.status,
    code: mapped.code,
    type: mapped.type,
    fallback: true,
  });
}

/** Options for `anthropicEventsToStream`. */
export interface AnthropicStreamOptions {
  /** Maps a failure while reading the events (abort, timeout, reset) to an `UpstreamError`. */
  mapReadError?: (error: unknown) => UpstreamError;
  /** Secrets to scrub from upstream error messages. */
  secrets?: string[];
}

type BlockKind = { kind: "text" } | { kind: "thinking"; last: string | null; signature?: string } | {
  kind: "tool";
  toolIndex: number;
} | {
  kind: "other";
};

function parseData(data: string): Record<string, unknown> | null {
  try {
    const value: unknown = JSON.parse(data);
    return value !== null && typeof value === "object" ? value as Record<string, unknown> : null;
  } catch {
    return null;
  }
}

/** Translates Anthropic SSE events into canonical stream events. */
export function anthropicEventsToStream(
  events: ReadableStream<SseEvent>,
  options: AnthropicStreamOptions = {},
): ReadableStream<StreamEvent> {
  const reader = events.getReader();
  const blocks = new Map<number, BlockKind>();
  let toolCount = 0;
  let produced = false;
  let inputUsage: AnthropicUsage | undefined;
  let outputTokens: number | undefined;
  let stopReason: string | null = null;
  let stopSequence: string | null = null;
  let sawStart = false;
  /** The prompt counts of `message_start`, until they go out with the first piece of the answer. */
  let startUsage: AnthropicUsage | undefined;

  const readError = (error: unknown): UpstreamError =>
    error instanceof UpstreamError ? error : options.mapReadError?.(error) ?? streamCutError("anthropic");

  let emitted = 0;
  /** Handles one event: whether the stream continues, completed or failed. */
  const handle = (
    event: SseEvent,
    controller: ReadableStreamDefaultController<StreamEvent>,
  ): "more" | "done" | "error" => {
    const emit = (streamEvent: StreamEvent) => {
      if (startUsage !== undefined) {
        // Only ahead of a piece of the answer: until one exists, a failure may still fall back.
        const usage = fromAnthropicUsage({ ...startUsage, output_tokens: 0 });
        const details = anthropicUsageDetails(startUsage);
        startUsage = undefined;
        controller.enqueue({ type: "prompt_usage", usage, ...(details ? { usage_details: details } : {}) });
      }
      emitted++;
      controller.enqueue(streamEvent);
    };
    const data = parseData(event.data);
    const type = event.event ?? (typeof data?.type === "string" ? data.type : null);
    if (type === "error") {
      controller.error(anthropicStreamError(data, { produced, secrets: options.secrets }));
      return "error";
    }
    if (data === null) {
      controller.error(streamError("anthropic", "the upstream sent an event whose data is not json"));
      return "error";
    }
    switch (type) {
      case "message_start": {
        sawStart = true;
        const message = data.message as { usage?: AnthropicUsage } | undefined;
        inputUsage = message?.usage;
        if (typeof inputUsage?.input_tokens === "number") startUsage = inputUsage;
        break;
      }
      case "content_block_start": {
        const index = Number(data.index);
        const block = data.content_block as { type?: string; text?: string; id?: string; name?: string };
        if (block?.type === "text") {
          blocks.set(index, { kind: "text" });
          if (typeof block.text === "string" && block.text !== "") {
            emit({ type: "text", text: block.text });
            produced = true;
          }
        } else if (block?.type === "thinking") {
          blocks.set(index, { kind: "thinking", last: null });
        } else if (block?.type === "tool_use") {
          const toolIndex = toolCount++;
          blocks.set(index, { kind: "tool", toolIndex });
          emit({ type: "tool_call_start", index: toolIndex, id: block.id ?? "", name: block.name ?? "" });
          produced = true;
        } else blocks.set(index, { kind: "other" });
        break;
      }
      case "content_block_delta": {
        const block = blocks.get(Number(data.index));
        const delta = data.delta as
          | { type?: string; text?: string; thinking?: string; signature?: string; partial_json?: string }
          | undefined;
        if (block?.kind === "text" && delta?.type === "text_delta" && delta.text) {
          emit({ type: "text", text: delta.text });
          produced = true;
        } else if (block?.kind === "thinking" && delta?.type === "thinking_delta" && delta.thinking) {
          // Each piece waits for the next, so the block's last one can carry the signature that follows.
          if (block.last !== null) emit({ type: "reasoning", text: block.last });
          block.last = delta.thinking;
          produced = true;
        } else if (block?.kind === "thinking" && delta?.type === "signature_delta" && delta.signature) {
          block.signature = delta.signature;
        } else if (block?.kind === "tool" && delta?.type === "input_json_delta" && delta.partial_json) {
          emit({ type: "tool_call_args", index: block.toolIndex, fragment: delta.partial_json });
        }
        break;
      }
      case "content_block_stop": {
        const block = blocks.get(Number(data.index));
        if (block?.kind === "thinking" && (block.last !== null || block.signature !== undefined)) {
          emit({
            type: "reasoning",
            text: block.last ?? "",
            ...(block.signature !== undefined ? { signature: block.signature } : {}),
          });
          block.last = null;
        }
        break;
      }
      case "message_delta": {
        const delta = data.delta as
          | { stop_reason?: string | null; stop_sequence?: string | null }
          | undefined;
        if (delta?.stop_reason !== undefined) stopReason = delta.stop_reason;
        if (delta?.stop_sequence !== undefined) stopSequence = delta.stop_sequence;
        const usage = data.usage as AnthropicUsage | undefined;
        if (typeof usage?.output_tokens === "number") outputTokens = usage.output_tokens;
        // Newer API versions repeat whole-message input counters here; they supersede message_start's.
        if (usage && (usage.input_tokens != null || usage.cache_read_input_tokens != null)) {
          inputUsage = { ...inputUsage, ...withoutNulls(usage) };
        }
        break;
      }
      case "message_stop": {
        if (!sawStart) {
          controller.error(streamError("anthropic", "the upstream ended a message it never started"));
          return "error";
        }
        const usage = fromAnthropicUsage({
          ...inputUsage,
          output_tokens: outputTokens ?? inputUsage?.output_tokens,
        });
        const finish: StreamEvent = {
          type: "finish",
          finish_reason: fromAnthropicStopReason(stopReason, toolCount > 0),
          usage,
        };
        const details = anthropicUsageDetails(inputUsage);
        if (details) finish.usage_details = details;
        const stop = anthropicStopDetail(stopReason, stopSequence);
        if (stop) finish.stop_detail = stop;
        emit(finish);
        controller.close();
        return "done";
      }
      default:
        // ping and event types added later carry nothing we need
        break;
    }
    return "more";
  };

  return new ReadableStream<StreamEvent>({
    async pull(controller) {
      while (true) {
        let next: ReadableStreamReadResult<SseEvent>;
        try {
          next = await reader.read();
        } catch (error) {
          controller.error(readError(error));
          return;
        }
        if (next.done) {
          controller.error(streamCutError("anthropic"));
          return;
        }
        const before = emitted;
        const outcome = handle(next.value, controller);
        if (outcome === "done") {
          await drain(reader);
          return;
        }
        if (outcome === "error") {
          await reader.cancel().catch(() => {});
          return;
        }
        // Keep reading until this pull produced something, so a consumer is never left waiting.
        if (emitted !== before) return;
      }
    },
    async cancel(reason) {
      await reader.cancel(reason).catch(() => {});
    },
  });
}

function withoutNulls(usage: AnthropicUsage): AnthropicUsage {
  return Object.fromEntries(Object.entries(usage).filter(([, v]) => v != null)) as AnthropicUsage;
}
