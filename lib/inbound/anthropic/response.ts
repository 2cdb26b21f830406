/**
 * The `message` object of the router's `/v1/messages` endpoint in Anthropic's own format. Fields the API
 * omits are omitted here too (no `null` where a client schema expects an array or nothing); counts the
 * upstream reported exactly are passed on exactly.
 */

import type { ChatResult, FinishReason, StopDetail, Usage, UsageDetails } from "../../canonical/mod.ts";
import { argumentsObject } from "../../canonical/mod.ts";
import type { ClientResponseMeta } from "../types.ts";

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
  return argumentsObject(args) ?? { _raw_arguments: args };
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
