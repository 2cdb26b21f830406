/**
 * An Anthropic SSE event stream → canonical `StreamEvent`s (one `finish`, or an `UpstreamError`, never
 * both), decoded event by event inside the shared loop of event_stream.ts.
 */

import type { StreamEvent } from "../../canonical/mod.ts";
import type { EventDecoder } from "../event_stream.ts";
import { scrubSecrets, streamError } from "../http_errors.ts";
import type { SseEvent } from "../sse.ts";
import { UpstreamError } from "../types.ts";
import {
  anthropicStopDetail,
  type AnthropicUsage,
  anthropicUsageDetails,
  fromAnthropicStopReason,
  fromAnthropicUsage,
} from "./response.ts";

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

/**
 * A decoder for one streamed answer's Anthropic SSE events: text, thinking (each piece held back one step
 * so the block's last piece can carry its signature) and tool-use blocks by block index, the prompt counts
 * of `message_start` ahead of the first piece of the answer, and the `finish` that `message_stop` emits.
 */
export function anthropicEventDecoder(options: { secrets?: string[] } = {}): EventDecoder<SseEvent> {
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

  return (event, emitEvent) => {
    const emit = (streamEvent: StreamEvent) => {
      if (startUsage !== undefined) {
        // Only ahead of a piece of the answer: until one exists, a failure may still fall back.
        const usage = fromAnthropicUsage({ ...startUsage, output_tokens: 0 });
        const details = anthropicUsageDetails(startUsage);
        startUsage = undefined;
        emitEvent({ type: "prompt_usage", usage, ...(details ? { usage_details: details } : {}) });
      }
      emitEvent(streamEvent);
    };
    const data = parseData(event.data);
    const type = event.event ?? (typeof data?.type === "string" ? data.type : null);
    if (type === "error") {
      throw anthropicStreamError(data, { produced, secrets: options.secrets });
    }
    if (data === null) {
      throw streamError("anthropic", "the upstream sent an event whose data is not json");
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
          throw streamError("anthropic", "the upstream ended a message it never started");
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
        return "done";
      }
      default:
        // ping and event types added later carry nothing we need
        break;
    }
    return "more";
  };
}

function withoutNulls(usage: AnthropicUsage): AnthropicUsage {
  return Object.fromEntries(Object.entries(usage).filter(([, v]) => v != null)) as AnthropicUsage;
}
