/**
 * Ollama's `/api/chat` answers → canonical shapes: a whole JSON answer → `ChatResult`, and each NDJSON
 * chunk of a streamed one → `StreamEvent`s (decoded by the shared loop in event_stream.ts).
 */
import {
  argumentsText,
  type ChatResult,
  type FinishReason,
  type ToolCall,
  type Usage,
} from "../../canonical/mod.ts";
import type { EventDecoder } from "../event_stream.ts";
import { answerError, streamError } from "../http_errors.ts";

interface OllamaToolCall {
  id?: string;
  function?: { index?: number; name?: string; arguments?: unknown };
}

/** One Ollama answer: the whole JSON answer, or one NDJSON chunk of a streamed one. */
export interface OllamaChunk {
  model?: string;
  message?: { role?: string; content?: string; thinking?: string; tool_calls?: OllamaToolCall[] };
  done?: boolean;
  done_reason?: string;
  prompt_eval_count?: number;
  eval_count?: number;
  error?: unknown;
}

/**
 * A fresh id for an Ollama tool call that came without one: random, so the same call in two turns (or two
 * calls in one answer) never share an id. Ids are not part of the output hash, so replay is unaffected.
 */
export function mintToolCallId(): string {
  return `call_${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
}

function toToolCall(call: OllamaToolCall): ToolCall {
  const name = call.function?.name ?? "";
  const args = argumentsText(call.function?.arguments);
  const id = typeof call.id === "string" && call.id !== "" ? call.id : mintToolCallId();
  return { id, type: "function", function: { name, arguments: args } };
}

function toUsage(chunk: OllamaChunk): Usage {
  const prompt = chunk.prompt_eval_count ?? 0;
  const completion = chunk.eval_count ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function toFinish(doneReason: string | undefined, hasToolCalls: boolean): FinishReason {
  if (doneReason === "length") return "length";
  return hasToolCalls ? "tool_calls" : "stop";
}

function errorText(error: unknown): string {
  return typeof error === "string" ? error : JSON.stringify(error);
}

/** The canonical result of a whole Ollama answer; an error object in a 200 answer throws (fallback-worthy). */
export function fromOllamaAnswer(chunk: OllamaChunk, fallbackModel: string): ChatResult {
  if (chunk.error !== undefined) throw answerError("local", errorText(chunk.error));
  const toolCalls = (chunk.message?.tool_calls ?? []).map((call) => toToolCall(call));
  const text = chunk.message?.content ?? "";
  const result: ChatResult = {
    model: chunk.model ?? fallbackModel,
    content: text === "" && toolCalls.length > 0 ? null : text,
    tool_calls: toolCalls,
    finish_reason: toFinish(chunk.done_reason, toolCalls.length > 0),
    usage: toUsage(chunk),
  };
  const thinking = chunk.message?.thinking;
  if (typeof thinking === "string" && thinking !== "") result.reasoning = thinking;
  return result;
}

/**
 * A decoder for one streamed answer's NDJSON chunks: thinking, text and whole tool calls (Ollama sends each
 * call complete, so its arguments go out as one fragment) until the `done: true` chunk, which finishes.
 */
export function ollamaChunkDecoder(): EventDecoder<unknown> {
  let toolIndex = 0;
  return (value, emit) => {
    const chunk = value as OllamaChunk;
    if (chunk === null || typeof chunk !== "object") return "more";
    if (chunk.error !== undefined) throw streamError("local", errorText(chunk.error));
    const thinking = chunk.message?.thinking;
    if (typeof thinking === "string" && thinking !== "") emit({ type: "reasoning", text: thinking });
    const text = chunk.message?.content;
    if (typeof text === "string" && text !== "") emit({ type: "text", text });
    for (const raw of chunk.message?.tool_calls ?? []) {
      const call = toToolCall(raw);
      emit({ type: "tool_call_start", index: toolIndex, id: call.id, name: call.function.name });
      emit({ type: "tool_call_args", index: toolIndex, fragment: call.function.arguments });
      toolIndex++;
    }
    if (chunk.done !== true) return "more";
    emit({
      type: "finish",
      finish_reason: toFinish(chunk.done_reason, toolIndex > 0),
      usage: toUsage(chunk),
    });
    return "done";
  };
}
