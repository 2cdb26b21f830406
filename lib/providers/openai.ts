/**
 * The OpenAI provider: `POST {baseUrl}/chat/completions`. Our canonical request already is OpenAI's
 * shape, so the request passes through; answers and SSE chunks become canonical results and events.
 */
import type { UpstreamFetch } from "./http1_client.ts";
import { parseSse } from "./sse.ts";
import type {
  ChatRequest,
  ChatResult,
  ChoiceLogprobs,
  FinishReason,
  StreamEvent,
  ToolCall,
  Usage,
  UsageDetails,
} from "../canonical/mod.ts";
import type { CallOptions, ProviderAdapter } from "./types.ts";
import {
  answerError,
  drain,
  readErrorBody,
  readJsonAnswer,
  streamCutError,
  streamError,
  upstreamCall,
  upstreamFailure,
} from "./upstream_errors.ts";

/** Options for `OpenAIAdapter`. */
export interface OpenAIAdapterOptions {
  /** Base URL including `/v1` (as `OPENAI_BASE_URL` and the SDK's `baseURL` spell it). */
  baseUrl: string;
  /** The router's OpenAI API key. */
  apiKey: string;
  /** The fetch to use (tests inject one); defaults to the global fetch. */
  fetch?: UpstreamFetch;
}

interface OpenAIToolCallDelta {
  index?: number;
  id?: string;
  type?: string;
  function?: { name?: string; arguments?: string };
}

interface OpenAIChoice {
  index?: number;
  message?: { content?: string | null; refusal?: string | null; tool_calls?: ToolCall[] };
  delta?: {
    role?: string;
    content?: string | null;
    refusal?: string | null;
    tool_calls?: OpenAIToolCallDelta[];
  };
  logprobs?: ChoiceLogprobs | null;
  finish_reason?: string | null;
}

interface OpenAIUsage extends Partial<Usage> {
  prompt_tokens_details?: { cached_tokens?: number } | null;
  completion_tokens_details?: { reasoning_tokens?: number } | null;
}

interface OpenAIBody {
  id?: string;
  model?: string;
  choices?: OpenAIChoice[];
  usage?: OpenAIUsage | null;
  error?: unknown;
}

const FINISH_REASONS = new Set(["stop", "length", "tool_calls", "content_filter"]);

function toFinish(reason: string | null | undefined): FinishReason {
  if (reason === "function_call") return "tool_calls";
  return reason && FINISH_REASONS.has(reason) ? reason as FinishReason : "stop";
}

/** The cache and reasoning token counts OpenAI reported, or undefined when it reported none. */
function toUsageDetails(usage: OpenAIUsage | null | undefined): UsageDetails | undefined {
  const details: UsageDetails = {};
  const cached = usage?.prompt_tokens_details?.cached_tokens;
  if (typeof cached === "number") details.cached_tokens = cached;
  const reasoning = usage?.completion_tokens_details?.reasoning_tokens;
  if (typeof reasoning === "number") details.reasoning_tokens = reasoning;
  return Object.keys(details).length > 0 ? details : undefined;
}

function isLogprobs(value: unknown): value is ChoiceLogprobs {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function toUsage(usage: Partial<Usage> | null | undefined): Usage {
  const prompt = usage?.prompt_tokens ?? 0;
  const completion = usage?.completion_tokens ?? 0;
  return {
    prompt_tokens: prompt,
    completion_tokens: completion,
    total_tokens: usage?.total_tokens ?? prompt + completion,
  };
}

/** Builds the `/chat/completions` body for a canonical request. */
export function toOpenAIRequest(
  request: ChatRequest,
  options: { model: string; stream: boolean },
): Record<string, unknown> {
  const body: Record<string, unknown> = { ...request, model: options.model, stream: options.stream };
  // OpenAI rejects stream_options on a non-streamed call; on a streamed one we always want usage.
  if (options.stream) body.stream_options = { include_usage: true };
  else delete body.stream_options;
  // Anthropic's `thinking` is not an OpenAI field (OpenAI would refuse it); docs/protocols.md says its fate.
  delete body.thinking;
  return body;
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
    if (body.error !== undefined && body.error !== null) {
      throw answerError("openai", readErrorBody(body).message ?? "unknown error", {
        secrets: [this.#apiKey],
      });
    }
    const choice = body.choices?.[0];
    const toolCalls = (choice?.message?.tool_calls ?? []).map((call) => ({
      id: call.id,
      type: "function" as const,
      function: { name: call.function.name, arguments: call.function.arguments },
    }));
    const result: ChatResult = {
      upstream_id: body.id,
      model: body.model ?? options.model,
      content: choice?.message?.content ?? null,
      tool_calls: toolCalls,
      finish_reason: toFinish(choice?.finish_reason),
      usage: toUsage(body.usage),
    };
    const refusal = choice?.message?.refusal;
    if (typeof refusal === "string") result.refusal = refusal;
    if (isLogprobs(choice?.logprobs)) result.logprobs = choice.logprobs;
    const details = toUsageDetails(body.usage);
    if (details) result.usage_details = details;
    return result;
  }

  /** Starts a streamed chat completion; resolves once OpenAI answered 200. */
  async stream(request: ChatRequest, options: CallOptions): Promise<ReadableStream<StreamEvent>> {
    const call = await this.#start(request, options, true);
    const body = call.response.body;
    if (body === null) throw streamCutError("openai");
    const reader = parseSse(body, { onItem: call.onEvent }).getReader();
    const secrets = [this.#apiKey];
    let finishReason: FinishReason | null = null;
    let usage: Usage | null = null;
    let usageDetails: UsageDetails | undefined;
    const fail = (error: unknown) =>
      upstreamFailure("openai", error, {
        signal: options.signal,
        stage: "stream",
        callSignal: call.signal,
      });
    return new ReadableStream<StreamEvent>({
      async pull(controller) {
        while (true) {
          let next: ReadableStreamReadResult<{ event: string | null; data: string }>;
          try {
            next = await reader.read();
          } catch (error) {
            controller.error(fail(error));
            return;
          }
          if (next.done) {
            controller.error(streamCutError("openai"));
            return;
          }
          const data = next.value.data;
          if (data.trim() === "[DONE]") {
            const finish: StreamEvent = { type: "finish", finish_reason: finishReason ?? "stop", usage };
            if (usageDetails) finish.usage_details = usageDetails;
            controller.enqueue(finish);
            controller.close();
            await drain(reader);
            return;
          }
          let chunk: OpenAIBody;
          try {
            chunk = JSON.parse(data) as OpenAIBody;
          } catch {
            controller.error(streamError("openai", "the upstream sent an event that is not JSON"));
            await reader.cancel().catch(() => {});
            return;
          }
          if (chunk === null || typeof chunk !== "object") continue;
          if (chunk.error !== undefined && chunk.error !== null) {
            controller.error(
              streamError("openai", readErrorBody(chunk).message ?? "unknown error", { secrets }),
            );
            await reader.cancel().catch(() => {});
            return;
          }
          if (chunk.usage) {
            usage = toUsage(chunk.usage);
            usageDetails = toUsageDetails(chunk.usage);
          }
          let produced = false;
          for (const choice of chunk.choices ?? []) {
            if ((choice.index ?? 0) !== 0) continue;
            const delta = choice.delta;
            if (typeof delta?.content === "string" && delta.content !== "") {
              const text: StreamEvent = { type: "text", text: delta.content };
              if (isLogprobs(choice.logprobs)) text.logprobs = choice.logprobs;
              controller.enqueue(text);
              produced = true;
            }
            if (typeof delta?.refusal === "string" && delta.refusal !== "") {
              controller.enqueue({ type: "refusal", text: delta.refusal });
              produced = true;
            }
            for (const tc of delta?.tool_calls ?? []) {
              const index = tc.index ?? 0;
              if (typeof tc.id === "string" && tc.id !== "") {
                controller.enqueue({
                  type: "tool_call_start",
                  index,
                  id: tc.id,
                  name: tc.function?.name ?? "",
                });
                produced = true;
              }
              const fragment = tc.function?.arguments;
              if (typeof fragment === "string" && fragment !== "") {
                controller.enqueue({ type: "tool_call_args", index, fragment });
                produced = true;
              }
            }
            if (choice.finish_reason) finishReason = toFinish(choice.finish_reason);
          }
          if (produced) return;
        }
      },
      async cancel(reason) {
        await reader.cancel(reason).catch(() => {});
      },
    });
  }
}
