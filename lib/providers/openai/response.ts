/**
 * OpenAI chat-completions answers → canonical shapes: a whole `chat.completion` → `ChatResult`, and each
 * `chat.completion.chunk` SSE event of a streamed one → `StreamEvent`s (decoded by the shared loop in
 * event_stream.ts), until `[DONE]`.
 */
import type {
  ChatResult,
  ChoiceLogprobs,
  FinishReason,
  StreamEvent,
  ToolCall,
  Usage,
  UsageDetails,
} from "../../canonical/mod.ts";
import type { EventDecoder } from "../event_stream.ts";
import { answerError, readErrorBody, streamError } from "../http_errors.ts";
import type { SseEvent } from "../sse.ts";

interface OpenAIToolCallDelta {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
}

interface OpenAIChoice {
  index?: number;
  message?: { content?: string | null; refusal?: string | null; tool_calls?: ToolCall[] };
  delta?: {
    role?: string;
    content?: string | null;
    refusal?: string | null;
    tool_calls?: OpenAIToolCallDelta[];
  };
  logprobs?: ChoiceLogprobs | null;
  finish_reason?: string | null;
}

interface OpenAIUsage extends Partial<Usage> {
  prompt_tokens_details?: { cached_tokens?: number } | null;
  completion_tokens_details?: { reasoning_tokens?: number } | null;
}

export interface OpenAIBody {
  id?: string;
  model?: string;
  choices?: OpenAIChoice[];
  usage?: OpenAIUsage | null;
  error?: unknown;
}

const FINISH_REASONS = new Set(["stop", "length", "tool_calls", "content_filter"]);

function toFinish(reason: string | null | undefined): FinishReason {
  if (reason === "function_call") return "tool_calls";
  return reason && FINISH_REASONS.has(reason) ? reason as FinishReason : "stop";
}

/** The cache and reasoning token counts OpenAI reported, or undefined when it reported none. */
function toUsageDetails(usage: OpenAIUsage | null | undefined): UsageDetails | undefined {
  const details: UsageDetails = {};
  const cached = usage?.prompt_tokens_details?.cached_tokens;
  if (typeof cached === "number") details.cached_tokens = cached;
  const reasoning = usage?.completion_tokens_details?.reasoning_tokens;
  if (typeof reasoning === "number") details.reasoning_tokens = reasoning;
  return Object.keys(details).length > 0 ? details : undefined;
}

function isLogprobs(value: unknown): value is ChoiceLogprobs {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function toUsage(usage: Partial<Usage> | null | undefined): Usage {
  const prompt = usage?.prompt_tokens ?? 0;
  const completion = usage?.completion_tokens ?? 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: usage?.total_tokens ?? prompt + completion,
  };
}

/** The canonical result of a whole `chat.completion`; an error object in a 200 answer throws (fallback-worthy). */
export function fromOpenAIAnswer(body: OpenAIBody, fallbackModel: string, secrets: string[]): ChatResult {
  if (body.error !== undefined && body.error !== null) {
    throw answerError("openai", readErrorBody(body).message ?? "unknown error", { secrets });
  }
  const choice = body.choices?.[0];
  const toolCalls = (choice?.message?.tool_calls ?? []).map((call) => ({
    id: call.id,
    type: "function" as const,
    function: { name: call.function.name, arguments: call.function.arguments },
  }));
  const result: ChatResult = {
    upstream_id: body.id,
    model: body.model ?? fallbackModel,
    content: choice?.message?.content ?? null,
    tool_calls: toolCalls,
    finish_reason: toFinish(choice?.finish_reason),
    usage: toUsage(body.usage),
  };
  const refusal = choice?.message?.refusal;
  if (typeof refusal === "string") result.refusal = refusal;
  if (isLogprobs(choice?.logprobs)) result.logprobs = choice.logprobs;
  const details = toUsageDetails(body.usage);
  if (details) result.usage_details = details;
  return result;
}

/**
 * A decoder for one streamed answer's SSE events: text (with its logprobs), refusal and tool-call pieces
 * of choice 0; usage and the finish reason are kept for the `finish` event that `[DONE]` emits.
 */
export function openAIEventDecoder(secrets: string[]): EventDecoder<SseEvent> {
  let finishReason: FinishReason | null = null;
  let usage: Usage | null = null;
  let usageDetails: UsageDetails | undefined;
  return (event, emit) => {
    const data = event.data;
    if (data.trim() === "[DONE]") {
      const finish: StreamEvent = { type: "finish", finish_reason: finishReason ?? "stop", usage };
      if (usageDetails) finish.usage_details = usageDetails;
      emit(finish);
      return "done";
    }
    let chunk: OpenAIBody;
    try {
      chunk = JSON.parse(data) as OpenAIBody;
    } catch {
      throw streamError("openai", "the upstream sent an event that is not JSON");
    }
    if (chunk === null || typeof chunk !== "object") return "more";
    if (chunk.error !== undefined && chunk.error !== null) {
      throw streamError("openai", readErrorBody(chunk).message ?? "unknown error", { secrets });
    }
    if (chunk.usage) {
      usage = toUsage(chunk.usage);
      usageDetails = toUsageDetails(chunk.usage);
    }
    for (const choice of chunk.choices ?? []) {
      if ((choice.index ?? 0) !== 0) continue;
      const delta = choice.delta;
      if (typeof delta?.content === "string" && delta.content !== "") {
        const text: StreamEvent = { type: "text", text: delta.content };
        if (isLogprobs(choice.logprobs)) text.logprobs = choice.logprobs;
        emit(text);
      }
      if (typeof delta?.refusal === "string" && delta.refusal !== "") {
        emit({ type: "refusal", text: delta.refusal });
      }
      for (const tc of delta?.tool_calls ?? []) {
        const index = tc.index ?? 0;
        if (typeof tc.id === "string" && tc.id !== "") {
          emit({ type: "tool_call_start", index, id: tc.id, name: tc.function?.name ?? "" });
        }
        const fragment = tc.function?.arguments;
        if (typeof fragment === "string" && fragment !== "") {
          emit({ type: "tool_call_args", index, fragment });
        }
      }
      if (choice.finish_reason) finishReason = toFinish(choice.finish_reason);
    }
    return "more";
  };
}
