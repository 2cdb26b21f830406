/**
 * The OpenAI provider: `POST {baseUrl}/chat/completions`, JSON or SSE. Request translation lives in
 * `request.ts`, answer translation in `response.ts`.
 */
import type { ChatRequest, ChatResult, StreamEvent } from "../../canonical/mod.ts";
import { upstreamEventStream } from "../event_stream.ts";
import type { UpstreamFetch } from "../http1_client.ts";
import { parseSse } from "../sse.ts";
import type { CallOptions, ProviderAdapter } from "../types.ts";
import { readJsonAnswer, upstreamCall } from "../upstream_call.ts";
import { toOpenAIRequest } from "./request.ts";
import { fromOpenAIAnswer, type OpenAIBody, openAIEventDecoder } from "./response.ts";

/** Options for `OpenAIAdapter`. */
export interface OpenAIAdapterOptions {
  /** Base URL including `/v1` (as `OPENAI_BASE_URL` and the SDK's `baseURL` spell it). */
  baseUrl: string;
  /** The router's OpenAI API key. */
  apiKey: string;
  /** The fetch to use (tests inject one); defaults to the global fetch. */
  fetch?: UpstreamFetch;
}

/** The OpenAI provider adapter (chat completions). */
export class OpenAIAdapter implements ProviderAdapter {
  /** Always `openai`. */
  readonly provider = "openai" as const;
  /** Always `openai_chat`. */
  readonly protocol = "openai_chat" as const;
  #baseUrl: string;
  #apiKey: string;
  #fetch?: UpstreamFetch;

  /** Builds an adapter for the OpenAI-compatible endpoint at `baseUrl`. */
  constructor(options: OpenAIAdapterOptions) {
    this.#baseUrl = options.baseUrl.replace(/\/+$/, "");
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch;
  }

  async #start(request: ChatRequest, options: CallOptions, stream: boolean) {
    return await upstreamCall(`${this.#baseUrl}/chat/completions`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: stream ? "text/event-stream" : "application/json",
        authorization: `Bearer ${this.#apiKey}`,
      },
      body: JSON.stringify(toOpenAIRequest(request, { model: options.model, stream })),
    }, { ...options, provider: "openai", fetch: this.#fetch, secrets: [this.#apiKey] });
  }

  /** Runs a non-streamed chat completion. */
  async complete(request: ChatRequest, options: CallOptions): Promise<ChatResult> {
    const call = await this.#start(request, options, false);
    const body = await readJsonAnswer<OpenAIBody>("openai", call, options);
    return fromOpenAIAnswer(body, options.model, [this.#apiKey]);
  }

  /** Starts a streamed chat completion; resolves once OpenAI answered 200. */
  async stream(request: ChatRequest, options: CallOptions): Promise<ReadableStream<StreamEvent>> {
    const call = await this.#start(request, options, true);
    return upstreamEventStream(call, parseSse, openAIEventDecoder([this.#apiKey]), {
      provider: "openai",
      signal: options.signal,
    });
  }
}
