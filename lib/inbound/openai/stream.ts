/**
 * The `chat.completion.chunk` SSE stream of `/v1/chat/completions`, shaped so the official `openai` SDK
 * consumes it unchanged.
 */
import { concatBytes } from "../../bytes.ts";
import type { ChoiceLogprobs, FinishReason, StreamEvent } from "../../canonical/mod.ts";
import { encodeSseEvent } from "../sse.ts";
import type { ClientErrorInfo, ClientResponseMeta, ClientStreamEncoder } from "../types.ts";
import { type OpenAIUsage, toOpenAIUsage } from "./response.ts";

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
