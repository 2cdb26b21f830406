import type { RequestFeatures } from "../contract/mod.ts";
import { type ChatMessage, type ChatRequest, type ContentPart, nativeBody } from "../canonical/mod.ts";

/** About four characters of English text per token: a cheap, deterministic prompt-size estimate. */
const CHARS_PER_TOKEN = 4;

/** Extracts what routing depends on from a request, without keeping any of its text. */
export function requestFeatures(chat: ChatRequest): RequestFeatures {
  let chars = 0;
  let hasImages = false;
  const countParts = (content: string | ContentPart[] | null) => {
    if (content === null) return;
    if (typeof content === "string") {
      chars += content.length;
      return;
    }
    for (const part of content) {
      if (part.type === "text") chars += part.text.length;
      else hasImages = true;
    }
  };
  for (const message of chat.messages) {
    countParts(message.content);
    if (message.role === "assistant" && message.tool_calls) {
      for (const call of message.tool_calls) {
        chars += call.function.arguments.length + call.function.name.length;
      }
    }
  }
  const format = chat.response_format?.type;
  // A client that spoke Anthropic has its own body sent to Anthropic as it came: nothing to rewrite or refuse.
  const native = nativeBody(chat, "anthropic_messages") !== undefined;
  const fields = providerFields(chat, native);
  const shape = native ? { late: false, assistantFirst: false } : messageShape(chat.messages);
  // Members in RFC 8785 order: the EDR records this object as it is.
  return {
    estimated_prompt_tokens: Math.ceil(chars / CHARS_PER_TOKEN),
    has_images: hasImages,
    ...(shape.late ? { has_late_system: true } : {}),
    has_tools: (chat.tools?.length ?? 0) > 0 && chat.tool_choice !== "none",
    json_mode: format === "json_object" || format === "json_schema",
    max_output_tokens: chat.max_completion_tokens ?? chat.max_tokens ?? null,
    ...(shape.assistantFirst ? { opens_with_assistant: true } : {}),
    ...(fields.length > 0 ? { provider_fields: fields } : {}),
    requested_model: chat.model ?? null,
    stream: chat.stream === true,
  };
}

/** Whether a message is a turn of the conversation as Anthropic sees it (empty text is no turn). */
function isTurn(message: ChatMessage): boolean {
  if (message.role === "system" || message.role === "developer") return false;
  if (message.role === "tool") return true;
  const content = message.content;
  const hasContent = content !== null &&
    (typeof content === "string" ? content !== "" : content.some((p) => p.type !== "text" || p.text !== ""));
  return hasContent || (message.role === "assistant" && (message.tool_calls?.length ?? 0) > 0);
}

/**
 * The message shapes Anthropic cannot take as they are (the adapter's rewrites, recorded by decide() as
 * factors): a system or developer message after the first turn, and a first turn that is the assistant's.
 */
function messageShape(messages: ChatMessage[]): { late: boolean; assistantFirst: boolean } {
  let first: ChatMessage | undefined;
  let late = false;
  for (const message of messages) {
    if (first === undefined) {
      if (isTurn(message)) first = message;
    } else if (message.role === "system" || message.role === "developer") late = true;
  }
  return { late, assistantFirst: first?.role === "assistant" };
}

/**
 * The request's fields that only some providers honour (decide()'s `FIELD_PROVIDERS`), in sorted order:
 * each one set to something that asks for more than the default (`logprobs: false`, `store: false`,
 * penalties of 0 and an empty `logit_bias` or `metadata` ask for nothing, so any provider honours them).
 * `temperature` counts only above 1 and `top_p` only when it is not 1 beside `temperature` (the values
 * Anthropic cannot take); not for a client that spoke Anthropic (`native`), whose body Anthropic judges.
 */
function providerFields(chat: ChatRequest, native: boolean): string[] {
  const fields: string[] = [];
  if (!native && chat.frequency_penalty !== undefined && chat.frequency_penalty !== 0) {
    fields.push("frequency_penalty");
  }
  if (chat.logit_bias !== undefined && Object.keys(chat.logit_bias).length > 0) fields.push("logit_bias");
  if (chat.logprobs === true) fields.push("logprobs");
  if (chat.metadata !== undefined && Object.keys(chat.metadata).length > 0) fields.push("metadata");
  if (chat.prediction !== undefined) fields.push("prediction");
  if (!native && chat.presence_penalty !== undefined && chat.presence_penalty !== 0) {
    fields.push("presence_penalty");
  }
  if (chat.prompt_cache_key !== undefined) fields.push("prompt_cache_key");
  if (chat.reasoning_effort !== undefined) fields.push("reasoning_effort");
  if (chat.safety_identifier !== undefined) fields.push("safety_identifier");
  if (!native && chat.seed !== undefined) fields.push("seed");
  if (chat.service_tier !== undefined) fields.push("service_tier");
  if (chat.store === true) fields.push("store");
  if (!native && chat.temperature !== undefined && chat.temperature > 1) fields.push("temperature");
  if (chat.top_k !== undefined) fields.push("top_k");
  if (chat.top_logprobs !== undefined) fields.push("top_logprobs");
  if (!native && chat.temperature !== undefined && chat.top_p !== undefined && chat.top_p !== 1) {
    fields.push("top_p");
  }
  if (chat.verbosity !== undefined) fields.push("verbosity");
  return fields;
}
