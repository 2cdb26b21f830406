/**
 * Anthropic Messages answers → canonical shapes: a whole `message` object → `ChatResult`, and the usage,
 * stop-reason and stop-detail readings a streamed one shares (`stream.ts` decodes its events).
 */

import type {
  ChatResult,
  FinishReason,
  StopDetail,
  ToolCall,
  Usage,
  UsageDetails,
} from "../../canonical/mod.ts";
import { argumentsText } from "../../canonical/mod.ts";

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
function anthropicInputTokens(usage: AnthropicUsage | undefined): number {
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
        function: { name: block.name ?? "", arguments: argumentsText(block.input) },
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
