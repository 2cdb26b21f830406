/**
 * Client-facing OpenAI chat-completions encoders: the `chat.completion` JSON body and the
 * `chat.completion.chunk` SSE stream, shaped so the official `openai` SDK consumes them unchanged.
 */
import { concatBytes } from "../bytes.ts";
import { encodeSseEvent } from "./sse.ts";
import type {
  ChatResult,
  ChoiceLogprobs,
  ClientErrorInfo,
  ClientResponseMeta,
  ClientStreamEncoder,
  FinishReason,
  StreamEvent,
  Usage,
  UsageDetails,
} from "./types.ts";

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

/** Options for `OpenAIStreamEncoder`. */
export interface OpenAIStreamEncoderOptions {
  /** The client asked for `stream_options.include_usage`: add the usage chunk and `usage: null` elsewhere. */
  includeUsage: boolean;
}

const encoder = new TextEncoder();

/** Encodes canonical stream events as OpenAI `chat.completion.chunk` SSE events. */
export class OpenAIStreamEncoder implements ClientStreamEncoder {
  #meta: ClientResponseMeta;
  #includeUsage: boolean;

  /** Builds an encoder for one answer. */
  constructor(meta: ClientResponseMeta, options: OpenAIStreamEncoderOptions) {
    this.#meta = meta;
    this.#includeUsage = options.includeUsage;
  }

  #chunk(choices: unknown[], usage?: OpenAIUsage): Uint8Array {
    const chunk: Record<string, unknown> = {
      id: this.#meta.id,
      object: "chat.completion.chunk",
      created: this.#meta.created,
      model: this.#meta.model,
      choices,
    };
    if (this.#includeUsage) chunk.usage = usage ?? null;
    return encoder.encode(encodeSseEvent(JSON.stringify(chunk)));
  }

  #delta(
    delta: Record<string, unknown>,
    finishReason: FinishReason | null = null,
    logprobs: ChoiceLogprobs | null = null,
  ): Uint8Array {
    return this.#chunk([{ index: 0, delta, logprobs, finish_reason: finishReason }]);
  }

  /** The role chunk that opens the stream. */
  start(): Uint8Array {
    return this.#delta({ role: "assistant", content: "" });
  }

  /** The chunk(s) for one canonical event. */
  encode(event: StreamEvent): Uint8Array {
    switch (event.type) {
      case "text":
        return this.#delta({ content: event.text }, null, event.logprobs ?? null);
      case "reasoning":
        return this.#delta({ reasoning_content: event.text });
      case "refusal":
        return this.#delta({ refusal: event.text });
      case "prompt_usage":
        // OpenAI reports usage only at the end of a stream.
        return new Uint8Array();
      case "tool_call_start":
        return this.#delta({
          tool_calls: [{
            index: event.index,
            id: event.id,
            type: "function",
            function: { name: event.name, arguments: "" },
          }],
        });
      case "tool_call_args":
        return this.#delta({ tool_calls: [{ index: event.index, function: { arguments: event.fragment } }] });
      case "finish": {
        const finish = this.#delta({}, event.finish_reason);
        if (!this.#includeUsage) return finish;
        // OpenAI always reports usage; an upstream that gave none is reported as zero, not omitted.
        const usage = event.usage ?? { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 };
        return concatBytes([finish, this.#chunk([], toOpenAIUsage(usage, event.usage_details))]);
      }
    }
  }

  /** The `[DONE]` sentinel that ends a successful stream. */
  done(): Uint8Array {
    return encoder.encode("data: [DONE]\n\n");
  }

  /** An error event; the stream must close after it, without `[DONE]`. */
  error(info: ClientErrorInfo): Uint8Array {
    const body = { error: { message: info.message, type: info.type, code: info.code, param: null } };
    return encoder.encode(encodeSseEvent(JSON.stringify(body)));
  }
}
