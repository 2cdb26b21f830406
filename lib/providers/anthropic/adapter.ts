/**
 * The Anthropic Messages provider adapter: `POST {base}/v1/messages`, JSON or SSE. Request and answer
 * translation live in `request.ts`, `response.ts` and `stream.ts`; HTTP error mapping (400/404/413 stay
 * client errors, 401/403 → 502, 429 and 529 and 5xx fall back) in `../http_errors.ts`.
 */

import type { ChatRequest, ChatResult, StreamEvent } from "../../canonical/mod.ts";
import { upstreamEventStream } from "../event_stream.ts";
import type { UpstreamFetch } from "../http1_client.ts";
import { parseSse } from "../sse.ts";
import type { CallOptions, ProviderAdapter } from "../types.ts";
import { readJsonAnswer, upstreamCall } from "../upstream_call.ts";
import { toAnthropicRequest } from "./request.ts";
import { type AnthropicResponseMessage, fromAnthropicResponse } from "./response.ts";
import { anthropicEventDecoder } from "./stream.ts";

/** The API version header value the adapter speaks. */
export const ANTHROPIC_VERSION = "2023-06-01";

/** Options for `AnthropicAdapter`. */
export interface AnthropicAdapterOptions {
  /** Base URL without `/v1`, e.g. `https://api.anthropic.com`. */
  baseUrl: string;
  /** Sent as `x-api-key`; never logged or echoed. */
  apiKey: string;
  /** The fetch to use (tests inject one); defaults to the global fetch. */
  fetch?: UpstreamFetch;
}

/** The Anthropic provider adapter (`/v1/messages`). */
export class AnthropicAdapter implements ProviderAdapter {
  /** Always `anthropic`. */
  readonly provider = "anthropic" as const;
  /** Always `anthropic_messages`. */
  readonly protocol = "anthropic_messages" as const;
  #baseUrl: string;
  #apiKey: string;
  #fetch?: UpstreamFetch;

  /** Builds an adapter for the Anthropic API at `baseUrl`. */
  constructor(options: AnthropicAdapterOptions) {
    // Tolerate a base given with `/v1` (the OpenAI habit) so the path is never doubled.
    this.#baseUrl = options.baseUrl.replace(/\/+$/, "").replace(/\/v1$/, "");
    this.#apiKey = options.apiKey;
    this.#fetch = options.fetch;
  }

  async #start(request: ChatRequest, options: CallOptions, stream: boolean) {
    const body = toAnthropicRequest(request, {
      model: options.model,
      defaultMaxTokens: options.defaultMaxTokens,
      stream,
    });
    return await upstreamCall(`${this.#baseUrl}/v1/messages`, {
      method: "POST",
      headers: {
        "x-api-key": this.#apiKey,
        "anthropic-version": ANTHROPIC_VERSION,
        "content-type": "application/json",
        accept: stream ? "text/event-stream" : "application/json",
      },
      body: JSON.stringify(body),
    }, { ...options, provider: "anthropic", fetch: this.#fetch, secrets: [this.#apiKey] });
  }

  /** Runs a non-streamed Messages call. */
  async complete(request: ChatRequest, options: CallOptions): Promise<ChatResult> {
    const call = await this.#start(request, options, false);
    const message = await readJsonAnswer<AnthropicResponseMessage>("anthropic", call, options);
    return fromAnthropicResponse(message, options.model);
  }

  /** Starts a streamed Messages call; resolves once Anthropic answered 200. */
  async stream(request: ChatRequest, options: CallOptions): Promise<ReadableStream<StreamEvent>> {
    const call = await this.#start(request, options, true);
    return upstreamEventStream(call, parseSse, anthropicEventDecoder({ secrets: [this.#apiKey] }), {
      provider: "anthropic",
      signal: options.signal,
    });
  }
}
