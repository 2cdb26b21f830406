/**
 * The local provider: Ollama's native `POST /api/chat`, JSON or NDJSON. Request translation lives in
 * `request.ts`, answer translation in `response.ts`, the forced-tool emulation in `forced_tool.ts`.
 */
import type { ChatRequest, ChatResult, StreamEvent } from "../../canonical/mod.ts";
import { normalizeOllamaHost } from "../../config/mod.ts";
import { upstreamEventStream } from "../event_stream.ts";
import type { UpstreamFetch } from "../http1_client.ts";
import { parseNdjson } from "../ndjson.ts";
import type { CallOptions, ProviderAdapter } from "../types.ts";
import { readJsonAnswer, upstreamCall } from "../upstream_call.ts";
import { forcedCallStream, forcedTool, toForcedCall } from "./forced_tool.ts";
import { toOllamaRequest } from "./request.ts";
import { fromOllamaAnswer, mintToolCallId, type OllamaChunk, ollamaChunkDecoder } from "./response.ts";

/** Options for `OllamaAdapter`. */
export interface OllamaAdapterOptions {
  /** Ollama's base URL (`http://host:port`; a bare `host:port` is accepted, as `OLLAMA_HOST` allows). */
  baseUrl: string;
  /** The fetch to use (tests inject one); defaults to the global fetch. */
  fetch?: UpstreamFetch;
}

/** The local Ollama provider adapter (`/api/chat`). */
export class OllamaAdapter implements ProviderAdapter {
  /** Always `local`. */
  readonly provider = "local" as const;
  /** Always `ollama_chat`. */
  readonly protocol = "ollama_chat" as const;
  #baseUrl: string;
  #fetch?: UpstreamFetch;

  /** Builds an adapter for the Ollama host at `baseUrl`. */
  constructor(options: OllamaAdapterOptions) {
    this.#baseUrl = normalizeOllamaHost(options.baseUrl);
    this.#fetch = options.fetch;
  }

  async #start(request: ChatRequest, options: CallOptions, stream: boolean) {
    const body = toOllamaRequest(request, {
      model: options.model,
      stream,
      keepAlive: options.keepAlive,
      contextWindow: options.contextWindow,
    });
    return await upstreamCall(`${this.#baseUrl}/api/chat`, {
      method: "POST",
      headers: {
        "content-type": "application/json",
        accept: stream ? "application/x-ndjson" : "application/json",
      },
      body: JSON.stringify(body),
    }, { ...options, provider: "local", fetch: this.#fetch });
  }

  /** Runs a non-streamed `/api/chat` call. */
  async complete(request: ChatRequest, options: CallOptions): Promise<ChatResult> {
    const forced = forcedTool(request);
    const call = await this.#start(request, options, false);
    const result = fromOllamaAnswer(await readJsonAnswer<OllamaChunk>("local", call, options), options.model);
    return forced === null ? result : toForcedCall(result, forced, mintToolCallId);
  }

  /** Starts a streamed `/api/chat` call; resolves once Ollama answered 200. */
  async stream(request: ChatRequest, options: CallOptions): Promise<ReadableStream<StreamEvent>> {
    const forced = forcedTool(request);
    const call = await this.#start(request, options, true);
    const events = upstreamEventStream(call, parseNdjson, ollamaChunkDecoder(), {
      provider: "local",
      signal: options.signal,
    });
    return forced === null ? events : events.pipeThrough(forcedCallStream(forced, mintToolCallId));
  }
}
