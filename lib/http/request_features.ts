import type { RequestFeatures } from "../contract/mod.ts";
import type { ChatRequest, ContentPart } from "../providers/mod.ts";

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
  const fields = providerFields(chat);
  // Members in RFC 8785 order: the EDR records this object as it is.
  return {
    estimated_prompt_tokens: Math.ceil(chars / CHARS_PER_TOKEN),
    has_images: hasImages,
    has_tools: (chat.tools?.length ?? 0) > 0 && chat.tool_choice !== "none",
    json_mode: format === "json_object" || format === "json_schema",
    max_output_tokens: chat.max_completion_tokens ?? chat.max_tokens ?? null,
    ...(fields.length > 0 ? { provider_fields: fields } : {}),
    requested_model: chat.model ?? null,
    stream: chat.stream === true,
  };
}

/**
 * The request's fields that only some providers honour (decide()'s `FIELD_PROVIDERS`), in sorted order:
 * each one set to something that asks for more than the default (`logprobs: false`, `store: false` and an
 * empty `logit_bias` or `metadata` ask for nothing, so any provider honours them).
 */
function providerFields(chat: ChatRequest): string[] {
  const fields: string[] = [];
  if (chat.logit_bias !== undefined && Object.keys(chat.logit_bias).length > 0) fields.push("logit_bias");
  if (chat.logprobs === true) fields.push("logprobs");
  if (chat.metadata !== undefined && Object.keys(chat.metadata).length > 0) fields.push("metadata");
  if (chat.prediction !== undefined) fields.push("prediction");
  if (chat.prompt_cache_key !== undefined) fields.push("prompt_cache_key");
  if (chat.reasoning_effort !== undefined) fields.push("reasoning_effort");
  if (chat.safety_identifier !== undefined) fields.push("safety_identifier");
  if (chat.service_tier !== undefined) fields.push("service_tier");
  if (chat.store === true) fields.push("store");
  if (chat.top_logprobs !== undefined) fields.push("top_logprobs");
  if (chat.verbosity !== undefined) fields.push("verbosity");
  return fields;
}
