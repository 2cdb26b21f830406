/**
 * The SSE stream of the router's `/v1/messages` endpoint in Anthropic's own format (`event:` line plus a
 * data `type` that matches it).
 */

import type { StreamEvent } from "../../canonical/mod.ts";
import { encodeSseEvent } from "../sse.ts";
import type { ClientErrorInfo, ClientResponseMeta, ClientStreamEncoder } from "../types.ts";
import { anthropicErrorBody } from "./errors.ts";
import { toAnthropicStop, toAnthropicUsage } from "./response.ts";

/** Options for `AnthropicStreamEncoder`. */
export interface AnthropicStreamEncoderOptions {
  /**
   * Prompt tokens to report in `message_start` when the upstream does not say before the answer (an
   * estimate: Ollama and OpenAI report counts only at the end, where `message_delta` carries them).
   */
  inputTokens?: number;
}

type OpenBlock = { index: number; kind: "text" | "thinking" | "tool_use" };

/**
 * Encodes canonical stream events as Anthropic SSE (`event:` line plus a data `type` that matches it).
 * `message_start` goes out with the first piece of the answer, so it carries the upstream's exact prompt
 * count when one came (`prompt_usage`) and the estimate otherwise.
 */
export class AnthropicStreamEncoder implements ClientStreamEncoder {
  #meta: ClientResponseMeta;
  #inputTokens: number;
  #encoder = new TextEncoder();
  #started = false;
  #nextBlock = 0;
  #open: OpenBlock | null = null;
  /** Block index of each tool call, by tool index. */
  #toolBlocks = new Map<number, number>();

  /** Builds an encoder for one answer. */
  constructor(meta: ClientResponseMeta, options: AnthropicStreamEncoderOptions = {}) {
    this.#meta = meta;
    this.#inputTokens = options.inputTokens ?? 0;
  }

  #event(type: string, payload: Record<string, unknown>): string {
    return encodeSseEvent(JSON.stringify({ type, ...payload }), type);
  }

  #messageStart(usage: Record<string, number>): string {
    if (this.#started) return "";
    this.#started = true;
    return this.#event("message_start", {
      message: {
        id: this.#meta.id,
        type: "message",
        role: "assistant",
        model: this.#meta.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage,
      },
    });
  }

  #estimatedStart(): string {
    return this.#messageStart({
      input_tokens: this.#inputTokens,
      cache_creation_input_tokens: 0,
      cache_read_input_tokens: 0,
      output_tokens: 0,
    });
  }

  #closeOpen(): string {
    if (this.#open === null) return "";
    const out = this.#event("content_block_stop", { index: this.#open.index });
    this.#open = null;
    return out;
  }

  /** Opens a block of `kind` unless one is open already; returns its index and the bytes to send. */
  #ensure(kind: "text" | "thinking"): { index: number; out: string } {
    if (this.#open?.kind === kind) return { index: this.#open.index, out: "" };
    let out = this.#closeOpen();
    this.#open = { index: this.#nextBlock++, kind };
    out += this.#event("content_block_start", {
      index: this.#open.index,
      content_block: kind === "text"
        ? { type: "text", text: "" }
        : { type: "thinking", thinking: "", signature: "" },
    });
    return { index: this.#open.index, out };
  }

  /** Nothing yet: `message_start` waits for the first piece of the answer (see the class comment). */
  start(): Uint8Array {
    return new Uint8Array();
  }

  /** Content blocks and deltas for one canonical event. */
  encode(event: StreamEvent): Uint8Array {
    if (event.type === "prompt_usage") {
      const usage = toAnthropicUsage(event.usage, event.usage_details);
      return this.#encoder.encode(this.#messageStart({ ...usage, output_tokens: 0 }));
    }
    let out = this.#estimatedStart();
    switch (event.type) {
      case "text":
      case "refusal":
      case "reasoning": {
        const signature = event.type === "reasoning" ? event.signature : undefined;
        if (event.text === "" && signature === undefined) break;
        const thinking = event.type === "reasoning";
        const block = this.#ensure(thinking ? "thinking" : "text");
        out += block.out;
        if (event.text !== "") {
          out += this.#event("content_block_delta", {
            index: block.index,
            delta: thinking
              ? { type: "thinking_delta", thinking: event.text }
              : { type: "text_delta", text: event.text },
          });
        }
        if (signature !== undefined) {
          out += this.#event("content_block_delta", {
            index: block.index,
            delta: { type: "signature_delta", signature },
          });
        }
        break;
      }
      case "tool_call_start": {
        out += this.#closeOpen();
        this.#open = { index: this.#nextBlock++, kind: "tool_use" };
        this.#toolBlocks.set(event.index, this.#open.index);
        out += this.#event("content_block_start", {
          index: this.#open.index,
          content_block: { type: "tool_use", id: event.id, name: event.name, input: {} },
        });
        break;
      }
      case "tool_call_args": {
        if (event.fragment === "") break;
        // Upstreams send one call's fragments together; if one interleaves, the fragment still goes to
        // its own block, which SDKs accumulate by index.
        const index = this.#toolBlocks.get(event.index);
        if (index === undefined) break;
        out += this.#event("content_block_delta", {
          index,
          delta: { type: "input_json_delta", partial_json: event.fragment },
        });
        break;
      }
      case "finish": {
        out += this.#closeOpen();
        const usage: Record<string, number> = { output_tokens: event.usage?.completion_tokens ?? 0 };
        if (event.usage) {
          const full = toAnthropicUsage(event.usage, event.usage_details);
          usage.input_tokens = full.input_tokens;
          usage.cache_creation_input_tokens = full.cache_creation_input_tokens;
          usage.cache_read_input_tokens = full.cache_read_input_tokens;
        }
        out += this.#event("message_delta", {
          delta: toAnthropicStop(event.finish_reason, event.stop_detail),
          usage,
        });
        break;
      }
    }
    return this.#encoder.encode(out);
  }

  /** `message_stop`, ending a successful stream. */
  done(): Uint8Array {
    return this.#encoder.encode(this.#estimatedStart() + this.#closeOpen() + this.#event("message_stop", {}));
  }

  /** `event: error`, which Anthropic SDKs raise as an `APIError`. */
  error(info: ClientErrorInfo): Uint8Array {
    return this.#encoder.encode(encodeSseEvent(JSON.stringify(anthropicErrorBody(info)), "error"));
  }
}
