/**
 * The local provider: Ollama's native `POST /api/chat`. Translates canonical requests into Ollama's
 * shape (system messages, bare base64 images, tool-call arguments as objects, `options`) and its
 * JSON or NDJSON answers back into canonical results and events.
 */
import { normalizeOllamaHost } from "../config/mod.ts";
import type { UpstreamFetch } from "./http1_client.ts";
import { parseNdjson } from "./ndjson.ts";
import type {
  ChatMessage,
  ChatRequest,
  ChatResult,
  ContentPart,
  FinishReason,
  StreamEvent,
  ToolCall,
  Usage,
} from "../canonical/mod.ts";
import { type CallOptions, type ProviderAdapter, UpstreamError } from "./types.ts";
import {
  answerError,
  drain,
  readJsonAnswer,
  streamCutError,
  streamError,
  unsupportedFieldError,
  upstreamCall,
  upstreamFailure,
} from "./upstream_errors.ts";
import { forcedCallStream, type ForcedTool, forcedTool, toForcedCall } from "./ollama_forced_tool.ts";

/** Options for `OllamaAdapter`. */
export interface OllamaAdapterOptions {
  /** Ollama's base URL (`http://host:port`; a bare `host:port` is accepted, as `OLLAMA_HOST` allows). */
  baseUrl: string;
  /** The fetch to use (tests inject one); defaults to the global fetch. */
  fetch?: UpstreamFetch;
}

/** One message in Ollama's `/api/chat` shape. */
export interface OllamaMessage {
  role: "system" | "user" | "assistant" | "tool";
  content: string;
  images?: string[];
  tool_calls?: { function: { name: string; arguments: Record<string, unknown> } }[];
  tool_name?: string;
}

interface OllamaToolCall {
  id?: string;
  function?: { index?: number; name?: string; arguments?: unknown };
}

interface OllamaChunk {
  model?: string;
  message?: { role?: string; content?: string; thinking?: string; tool_calls?: OllamaToolCall[] };
  done?: boolean;
  done_reason?: string;
  prompt_eval_count?: number;
  eval_count?: number;
  error?: unknown;
}

function invalid(message: string, code: string, fallback: boolean): UpstreamError {
  return new UpstreamError(message, { status: 400, code, type: "invalid_request_error", fallback });
}

function imageToBase64(url: string): string {
  if (!url.startsWith("data:")) {
    // Ollama cannot fetch a URL; a cloud candidate can, so this is fallback-worthy.
    throw invalid(
      "the local model cannot take an image by url; send it as a base64 data url or allow a cloud provider",
      "IMAGE_URL_NOT_SUPPORTED_LOCALLY",
      true,
    );
  }
  const comma = url.indexOf(",");
  if (comma === -1) {
    throw invalid(
      "an image data url has no comma; send data:<type>;base64,<data>",
      "INVALID_IMAGE_URL",
      false,
    );
  }
  const meta = url.slice(5, comma);
  const payload = url.slice(comma + 1);
  if (meta.split(";").includes("base64")) return payload;
  // A percent-encoded data URL (e.g. SVG text) must become base64 for Ollama.
  const bytes = new TextEncoder().encode(decodeURIComponent(payload));
  let binary = "";
  for (const b of bytes) binary += String.fromCharCode(b);
  return btoa(binary);
}

function splitContent(content: string | ContentPart[] | null): { text: string; images: string[] } {
  if (content === null) return { text: "", images: [] };
  if (typeof content === "string") return { text: content, images: [] };
  const texts: string[] = [];
  const images: string[] = [];
  for (const part of content) {
    if (part.type === "text") texts.push(part.text);
    else images.push(imageToBase64(part.image_url.url));
  }
  return { text: texts.join("\n"), images };
}

function parseArguments(raw: string): Record<string, unknown> {
  if (raw.trim() === "") return {};
  let parsed: unknown;
  try {
    parsed = JSON.parse(raw);
  } catch {
    throw invalid(
      "an assistant tool call has arguments that are not valid JSON; send a JSON object string",
      "INVALID_TOOL_ARGUMENTS",
      false,
    );
  }
  if (parsed === null || typeof parsed !== "object" || Array.isArray(parsed)) {
    throw invalid(
      "an assistant tool call's arguments must be a JSON object",
      "INVALID_TOOL_ARGUMENTS",
      false,
    );
  }
  return parsed as Record<string, unknown>;
}

/** Translates canonical messages into Ollama's; throws `UpstreamError` 400 for what Ollama cannot take. */
export function toOllamaMessages(messages: ChatMessage[]): OllamaMessage[] {
  const toolNames = new Map<string, string>();
  const out: OllamaMessage[] = [];
  for (const message of messages) {
    const { text, images } = splitContent(message.content);
    const base: OllamaMessage = {
      role: message.role === "developer" ? "system" : message.role,
      content: text,
    };
    if (images.length > 0) base.images = images;
    if (message.role === "assistant" && message.tool_calls && message.tool_calls.length > 0) {
      base.tool_calls = message.tool_calls.map((call) => {
        toolNames.set(call.id, call.function.name);
        return { function: { name: call.function.name, arguments: parseArguments(call.function.arguments) } };
      });
    }
    if (message.role === "tool") {
      const name = toolNames.get(message.tool_call_id) ?? message.name;
      if (name !== undefined) base.tool_name = name;
    }
    out.push(base);
  }
  return out;
}

// Fallback-worthy: a cloud candidate can honour the field; without one the client gets this 400.
const unsupported = unsupportedFieldError;

/**
 * Throws `UNSUPPORTED_FIELD` (naming the field) for what Ollama cannot honour: a choice among several
 * forced tools (see `forcedTool`), `parallel_tool_calls: false` when the model may call tools freely, and
 * `logprobs`. Returns the one tool the request forces, if any (answered as JSON, one call).
 */
export function checkOllamaSupport(request: ChatRequest): ForcedTool | null {
  const tools = request.tools !== undefined && request.tools.length > 0 && request.tool_choice !== "none";
  const forced = forcedTool(request);
  // A forced tool is called exactly once, which is what parallel_tool_calls: false asks.
  if (tools && forced === null && request.parallel_tool_calls === false) {
    throw unsupported(
      "parallel_tool_calls",
      "the local model cannot be held to one tool call per turn (parallel_tool_calls false); leave it out, or allow a cloud provider",
    );
  }
  if (request.logprobs === true || (request.top_logprobs !== undefined && request.top_logprobs > 0)) {
    throw unsupported(
      request.logprobs === true ? "logprobs" : "top_logprobs",
      "the local model cannot return token logprobs; leave logprobs out, or allow the openai provider",
    );
  }
  return forced;
}

const THINK_LEVELS: Record<string, "low" | "medium" | "high"> = {
  minimal: "low",
  low: "low",
  medium: "medium",
  high: "high",
  xhigh: "high",
};

/**
 * Ollama's `think` for a request, or undefined to leave the model's default: `reasoning_effort` "none"
 * or Anthropic `thinking` disabled → false; any other effort, or thinking enabled/adaptive → true. Only
 * gpt-oss takes levels ("low" | "medium" | "high"); every other thinking model takes a boolean.
 */
export function thinkFor(
  request: ChatRequest,
  model: string,
): boolean | "low" | "medium" | "high" | undefined {
  const effort = request.reasoning_effort;
  if (effort !== undefined) {
    if (effort === "none") return false;
    return model.startsWith("gpt-oss") ? THINK_LEVELS[effort] ?? "medium" : true;
  }
  if (request.thinking !== undefined) return request.thinking.type !== "disabled";
  return undefined;
}

/** Builds the `/api/chat` body for a canonical request. */
export function toOllamaRequest(
  request: ChatRequest,
  options: { model: string; stream: boolean; keepAlive?: string | number; contextWindow?: number },
): Record<string, unknown> {
  const forced = checkOllamaSupport(request);
  const body: Record<string, unknown> = {
    model: options.model,
    messages: toOllamaMessages(request.messages),
  };
  // A forced tool is asked for as JSON in its schema (see ollama_forced_tool.ts): no tools go out.
  if (forced !== null) body.format = forced.schema;
  else if (request.tools && request.tools.length > 0 && request.tool_choice !== "none") {
    body.tools = request.tools;
  }
  const think = thinkFor(request, options.model);
  if (think !== undefined) body.think = think;
  const format = request.response_format;
  if (format?.type === "json_object") body.format = "json";
  else if (format?.type === "json_schema") body.format = format.json_schema.schema ?? "json";
  const opts: Record<string, unknown> = {};
  if (request.temperature !== undefined) opts.temperature = request.temperature;
  if (request.top_p !== undefined) opts.top_p = request.top_p;
  if (request.top_k !== undefined) opts.top_k = request.top_k;
  if (request.seed !== undefined) opts.seed = request.seed;
  const maxTokens = request.max_completion_tokens ?? request.max_tokens;
  if (maxTokens !== undefined) opts.num_predict = maxTokens;
  if (request.stop !== undefined) {
    opts.stop = typeof request.stop === "string" ? [request.stop] : request.stop;
  }
  if (request.presence_penalty !== undefined) opts.presence_penalty = request.presence_penalty;
  if (request.frequency_penalty !== undefined) opts.frequency_penalty = request.frequency_penalty;
  // Without num_ctx Ollama runs at its own default context (2k–4k tokens) and silently drops the start of
  // longer prompts; the policy's window is what decide() routed by. One value per model: a num_ctx that
  // changes between requests makes Ollama reload the model.
  if (options.contextWindow !== undefined) opts.num_ctx = options.contextWindow;
  if (Object.keys(opts).length > 0) body.options = opts;
  // Ollama streams unless told otherwise, so the flag is always explicit.
  body.stream = options.stream;
  if (options.keepAlive !== undefined) body.keep_alive = options.keepAlive;
  return body;
}

/**
 * A fresh id for an Ollama tool call that came without one: random, so the same call in two turns (or two
 * calls in one answer) never share an id. Ids are not part of the output hash, so replay is unaffected.
 */
export function mintToolCallId(): string {
  return `call_${crypto.randomUUID().replaceAll("-", "").slice(0, 24)}`;
}

function toToolCall(call: OllamaToolCall): ToolCall {
  const name = call.function?.name ?? "";
  const rawArgs = call.function?.arguments;
  const args = typeof rawArgs === "string" ? rawArgs : JSON.stringify(rawArgs ?? {});
  const id = typeof call.id === "string" && call.id !== "" ? call.id : mintToolCallId();
  return { id, type: "function", function: { name, arguments: args } };
}

function toUsage(chunk: OllamaChunk): Usage {
  const prompt = chunk.prompt_eval_count ?? 0;
  const completion = chunk.eval_count ?? 0;
  return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
}

function toFinish(doneReason: string | undefined, hasToolCalls: boolean): FinishReason {
  if (doneReason === "length") return "length";
  return hasToolCalls ? "tool_calls" : "stop";
}

function errorText(error: unknown): string {
  return typeof error === "string" ? error : JSON.stringify(error);
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
    const result = await this.#complete(request, options);
    return forced === null ? result : toForcedCall(result, forced, mintToolCallId);
  }

  /** Starts a streamed `/api/chat` call; resolves once Ollama answered 200. */
  async stream(request: ChatRequest, options: CallOptions): Promise<ReadableStream<StreamEvent>> {
    const forced = forcedTool(request);
    const events = await this.#stream(request, options);
    return forced === null ? events : events.pipeThrough(forcedCallStream(forced, mintToolCallId));
  }

  async #complete(request: ChatRequest, options: CallOptions): Promise<ChatResult> {
    const call = await this.#start(request, options, false);
    const chunk = await readJsonAnswer<OllamaChunk>("local", call, options);
    if (chunk.error !== undefined) throw answerError("local", errorText(chunk.error));
    const toolCalls = (chunk.message?.tool_calls ?? []).map((call) => toToolCall(call));
    const text = chunk.message?.content ?? "";
    const result: ChatResult = {
      model: chunk.model ?? options.model,
      content: text === "" && toolCalls.length > 0 ? null : text,
      tool_calls: toolCalls,
      finish_reason: toFinish(chunk.done_reason, toolCalls.length > 0),
      usage: toUsage(chunk),
    };
    const thinking = chunk.message?.thinking;
    if (typeof thinking === "string" && thinking !== "") result.reasoning = thinking;
    return result;
  }

  async #stream(request: ChatRequest, options: CallOptions): Promise<ReadableStream<StreamEvent>> {
    const call = await this.#start(request, options, true);
    const body = call.response.body;
    if (body === null) throw streamCutError("local");
    const reader = parseNdjson(body, { onItem: call.onEvent }).getReader();
    let toolIndex = 0;
    let finished = false;
    const fail = (error: unknown) =>
      upstreamFailure("local", error, {
        signal: options.signal,
        stage: "stream",
        callSignal: call.signal,
      });
    return new ReadableStream<StreamEvent>({
      async pull(controller) {
        // Loop until this pull produced at least one event, so consumers are never left waiting.
        while (true) {
          let next: ReadableStreamReadResult<unknown>;
          try {
            next = await reader.read();
          } catch (error) {
            controller.error(fail(error));
            return;
          }
          if (next.done) {
            if (!finished) controller.error(streamCutError("local"));
            return;
          }
          const chunk = next.value as OllamaChunk;
          if (chunk === null || typeof chunk !== "object") continue;
          if (chunk.error !== undefined) {
            controller.error(streamError("local", errorText(chunk.error)));
            await reader.cancel().catch(() => {});
            return;
          }
          let produced = false;
          const thinking = chunk.message?.thinking;
          if (typeof thinking === "string" && thinking !== "") {
            controller.enqueue({ type: "reasoning", text: thinking });
            produced = true;
          }
          const text = chunk.message?.content;
          if (typeof text === "string" && text !== "") {
            controller.enqueue({ type: "text", text });
            produced = true;
          }
          for (const raw of chunk.message?.tool_calls ?? []) {
            const call = toToolCall(raw);
            controller.enqueue({
              type: "tool_call_start",
              index: toolIndex,
              id: call.id,
              name: call.function.name,
            });
            controller.enqueue({
              type: "tool_call_args",
              index: toolIndex,
              fragment: call.function.arguments,
            });
            toolIndex++;
            produced = true;
          }
          if (chunk.done === true) {
            finished = true;
            controller.enqueue({
              type: "finish",
              finish_reason: toFinish(chunk.done_reason, toolIndex > 0),
              usage: toUsage(chunk),
            });
            controller.close();
            await drain(reader);
            return;
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
