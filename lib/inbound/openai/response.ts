/**
 * The `chat.completion` JSON body of `/v1/chat/completions`, shaped so the official `openai` SDK consumes
 * it unchanged.
 */
import type { ChatResult, ChoiceLogprobs, FinishReason, Usage, UsageDetails } from "../../canonical/mod.ts";
import type { ClientResponseMeta } from "../types.ts";

/** OpenAI's usage object: the three counts, plus cache and reasoning details when known. */
export interface OpenAIUsage extends Usage {
  prompt_tokens_details?: { cached_tokens: number };
  completion_tokens_details?: { reasoning_tokens: number };
}

/** A `chat.completion` response body. */
export interface OpenAIChatCompletion {
  id: string;
  object: "chat.completion";
  created: number;
  model: string;
  choices: {
    index: 0;
    message: {
      role: "assistant";
      content: string | null;
      /** The model's reasoning (Ollama thinking), as DeepSeek, vLLM and the AI SDK's compatible provider name it. */
      reasoning_content?: string;
      refusal: string | null;
      tool_calls?: ChatResult["tool_calls"];
    };
    logprobs: ChoiceLogprobs | null;
    finish_reason: FinishReason;
  }[];
  usage: OpenAIUsage;
}

/** `usage` with OpenAI's detail objects added for the counts the upstream reported. */
export function toOpenAIUsage(usage: Usage, details: UsageDetails | undefined): OpenAIUsage {
  const out: OpenAIUsage = {
    prompt_tokens: usage.prompt_tokens,
    completion_tokens: usage.completion_tokens,
    total_tokens: usage.total_tokens,
  };
  if (details?.cached_tokens !== undefined) {
    out.prompt_tokens_details = { cached_tokens: details.cached_tokens };
  }
  if (details?.reasoning_tokens !== undefined) {
    out.completion_tokens_details = { reasoning_tokens: details.reasoning_tokens };
  }
  return out;
}

/** Encodes a complete answer as OpenAI's `chat.completion` object. */
export function toOpenAIResponse(result: ChatResult, meta: ClientResponseMeta): OpenAIChatCompletion {
  const message: OpenAIChatCompletion["choices"][0]["message"] = {
    role: "assistant",
    content: result.content,
    refusal: result.refusal ?? null,
  };
  if (result.reasoning !== undefined && result.reasoning !== "") message.reasoning_content = result.reasoning;
  if (result.tool_calls.length > 0) {
    message.tool_calls = result.tool_calls.map((call) => ({
      id: call.id,
      type: "function",
      function: { name: call.function.name, arguments: call.function.arguments },
    }));
  }
  return {
    id: meta.id,
    object: "chat.completion",
    created: meta.created,
    model: meta.model,
    choices: [{ index: 0, message, logprobs: result.logprobs ?? null, finish_reason: result.finish_reason }],
    usage: toOpenAIUsage(result.usage, result.usage_details),
  };
}
