/**
 * The router's inbound Anthropic Messages endpoint (`POST /v1/messages`): the request schema, the
 * translation of an Anthropic request into the canonical `ChatRequest`, and the encoders that turn a
 * canonical answer back into an Anthropic `message` object or an Anthropic SSE stream.
 */

import { z } from "zod";
import { encodeSseEvent } from "./sse.ts";
import type {
  ChatMessage,
  ChatRequest,
  ChatResult,
  ClientErrorInfo,
  ClientResponseMeta,
  ClientStreamEncoder,
  ContentPart,
  FinishReason,
  StreamEvent,
  ToolCall,
  ToolChoice,
} from "./types.ts";

/**
 * Names an unknown field only while it looks like one: the message reaches the EDR, which holds no
 * client-chosen free text, and a field name is not a place for prose.
 */
function unknownField(issue: { code: string; keys?: unknown }): string | undefined {
  if (issue.code !== "unrecognized_keys" || !Array.isArray(issue.keys)) return undefined;
  const key = String(issue.keys[0]);
  return /^[A-Za-z0-9_-]{1,64}$/.test(key) ? `unknown field ${key}` : "an unknown field";
}

/** A closed object whose unknown-field error says which field without echoing free text. */
function closed<T extends z.core.$ZodLooseShape>(shape: T) {
  return z.strictObject(shape, { error: unknownField });
}

const cacheControl = z.looseObject({ type: z.literal("ephemeral") }).nullable().optional();

/**
 * A text block. `cache_control` and `citations` are accepted and ignored: SDKs echo an assistant
 * message's blocks back verbatim, and those carry `citations: null`.
 */
const textBlockSchema = closed({
  type: z.literal("text"),
  text: z.string(),
  cache_control: cacheControl,
  citations: z.array(z.unknown()).nullable().optional(),
});

const imageBlockSchema = closed({
  type: z.literal("image"),
  source: z.discriminatedUnion("type", [
    closed({
      type: z.literal("base64"),
      media_type: z.enum(["image/png", "image/jpeg", "image/gif", "image/webp"]),
      data: z.string().min(1),
    }),
    closed({ type: z.literal("url"), url: z.string().regex(/^https?:\/\//i) }),
  ]),
  cache_control: cacheControl,
});

const toolUseBlockSchema = closed({
  type: z.literal("tool_use"),
  id: z.string().min(1),
  name: z.string().min(1),
  input: z.record(z.string(), z.unknown()),
  cache_control: cacheControl,
  // Newer API versions return these on tool_use blocks; clients echo them back.
  caller: z.looseObject({ type: z.string() }).optional(),
  toolset_name: z.string().nullable().optional(),
});

const toolResultBlockSchema = closed({
  type: z.literal("tool_result"),
  tool_use_id: z.string().min(1),
  content: z.union([z.string(), z.array(z.discriminatedUnion("type", [textBlockSchema, imageBlockSchema]))])
    .optional(),
  is_error: z.boolean().optional(),
  cache_control: cacheControl,
  toolset_name: z.string().nullable().optional(),
});

const userBlockSchema = z.discriminatedUnion("type", [
  textBlockSchema,
  imageBlockSchema,
  toolResultBlockSchema,
]);
const assistantBlockSchema = z.discriminatedUnion("type", [textBlockSchema, toolUseBlockSchema]);

const toolNamePattern = /^[a-zA-Z0-9_-]{1,64}$/;

/** Longest model name, stop sequence and `metadata.user_id` accepted (characters; Anthropic's own `user_id` limit). */
export const MAX_ANTHROPIC_NAME_CHARS = 256;
/** Most stop sequences one request may send. */
export const MAX_STOP_SEQUENCES = 16;

const boundedName = z.string().max(
  MAX_ANTHROPIC_NAME_CHARS,
  `at most ${MAX_ANTHROPIC_NAME_CHARS} characters`,
);

/** Schema of an inbound Anthropic Messages request (without the router's extension fields). */
export const anthropicMessagesRequestSchema = closed({
  model: boundedName.min(1),
  max_tokens: z.number().int().min(1),
  messages: z.array(
    z.discriminatedUnion("role", [
      closed({ role: z.literal("user"), content: z.union([z.string(), z.array(userBlockSchema)]) }),
      closed({
        role: z.literal("assistant"),
        content: z.union([z.string(), z.array(assistantBlockSchema)]),
      }),
    ]),
  ).min(1),
  system: z.union([z.string(), z.array(textBlockSchema)]).optional(),
  temperature: z.number().min(0).max(1).optional(),
  top_p: z.number().min(0).max(1).optional(),
  top_k: z.number().int().min(0).optional(),
  stop_sequences: z.array(
    z.string().max(
      MAX_ANTHROPIC_NAME_CHARS,
      `a stop sequence has at most ${MAX_ANTHROPIC_NAME_CHARS} characters`,
    ),
  ).max(MAX_STOP_SEQUENCES, `at most ${MAX_STOP_SEQUENCES} stop sequences`).optional(),
  stream: z.boolean().optional(),
  tools: z.array(closed({
    type: z.literal("custom").optional(),
    name: z.string().regex(toolNamePattern, "tool names must match ^[a-zA-Z0-9_-]{1,64}$"),
    description: z.string().optional(),
    input_schema: z.looseObject({ type: z.literal("object") }),
    cache_control: cacheControl,
  })).optional(),
  tool_choice: z.discriminatedUnion("type", [
    closed({ type: z.literal("auto"), disable_parallel_tool_use: z.boolean().optional() }),
    closed({ type: z.literal("any"), disable_parallel_tool_use: z.boolean().optional() }),
    closed({
      type: z.literal("tool"),
      name: z.string().min(1),
      disable_parallel_tool_use: z.boolean().optional(),
    }),
    closed({ type: z.literal("none") }),
  ]).optional(),
  metadata: closed({ user_id: boundedName.nullable().optional() }).optional(),
});

/** An Anthropic Messages request body (inbound, and what the Anthropic adapter sends). */
export type AnthropicMessagesRequest = z.infer<typeof anthropicMessagesRequestSchema>;
/** One turn of an Anthropic Messages request. */
export type AnthropicMessage = AnthropicMessagesRequest["messages"][number];
/** A content block allowed in a user turn. */
export type AnthropicUserBlock = z.infer<typeof userBlockSchema>;
/** A content block allowed in an assistant turn. */
export type AnthropicAssistantBlock = z.infer<typeof assistantBlockSchema>;
/** A text or image block (the blocks a `tool_result` may hold). */
export type AnthropicTextOrImageBlock = z.infer<typeof textBlockSchema> | z.infer<typeof imageBlockSchema>;
/** A tool definition in Anthropic's shape. */
export type AnthropicTool = NonNullable<AnthropicMessagesRequest["tools"]>[number];
/** A tool choice in Anthropic's shape. */
export type AnthropicToolChoice = NonNullable<AnthropicMessagesRequest["tool_choice"]>;

function imagePart(block: z.infer<typeof imageBlockSchema>): ContentPart {
  const url = block.source.type === "base64"
    ? `data:${block.source.media_type};base64,${block.source.data}`
    : block.source.url;
  return { type: "image_url", image_url: { url } };
}

/** A single text part collapses to a plain string so the common case stays the common OpenAI shape. */
function partsToContent(parts: ContentPart[]): string | ContentPart[] {
  if (parts.length === 1 && parts[0].type === "text") return parts[0].text;
  return parts;
}

function toolResultMessage(block: z.infer<typeof toolResultBlockSchema>): ChatMessage {
  let content: string | ContentPart[];
  if (block.content === undefined) content = "";
  else if (typeof block.content === "string") content = block.content;
  else {
    content = partsToContent(
      block.content.map((b) => b.type === "text" ? { type: "text" as const, text: b.text } : imagePart(b)),
    );
  }
  // OpenAI's tool message has no error flag; saying so in the content keeps the meaning for the model.
  if (block.is_error) {
    content = typeof content === "string"
      ? `Error: ${content}`
      : [{ type: "text", text: "Error:" }, ...content];
  }
  return { role: "tool", tool_call_id: block.tool_use_id, content };
}

function fromToolChoice(choice: AnthropicToolChoice): ToolChoice {
  switch (choice.type) {
    case "auto":
      return "auto";
    case "none":
      return "none";
    case "any":
      return "required";
    case "tool":
      return { type: "function", function: { name: choice.name } };
  }
}

/**
 * Translates a parsed inbound Anthropic request into the canonical request. `top_k` has no OpenAI
 * equivalent and is dropped; `cache_control` hints are dropped.
 */
export function fromAnthropicRequest(body: AnthropicMessagesRequest): ChatRequest {
  const messages: ChatMessage[] = [];
  if (typeof body.system === "string") {
    if (body.system !== "") messages.push({ role: "system", content: body.system });
  } else if (body.system) {
    for (const block of body.system) messages.push({ role: "system", content: block.text });
  }
  for (const turn of body.messages) {
    if (typeof turn.content === "string") {
      messages.push({ role: turn.role, content: turn.content });
      continue;
    }
    if (turn.role === "user") {
      // Anthropic puts tool results first in the turn; OpenAI wants them as tool messages right after
      // the assistant's calls, so they go out before the turn's other content.
      const parts: ContentPart[] = [];
      for (const block of turn.content) {
        if (block.type === "tool_result") messages.push(toolResultMessage(block));
        else if (block.type === "text") parts.push({ type: "text", text: block.text });
        else parts.push(imagePart(block));
      }
      if (parts.length > 0) messages.push({ role: "user", content: partsToContent(parts) });
      continue;
    }
    const parts: ContentPart[] = [];
    const toolCalls: ToolCall[] = [];
    for (const block of turn.content) {
      if (block.type === "text") parts.push({ type: "text", text: block.text });
      else {
        toolCalls.push({
          id: block.id,
          type: "function",
          function: { name: block.name, arguments: JSON.stringify(block.input) },
        });
      }
    }
    const message: ChatMessage = {
      role: "assistant",
      content: parts.length === 0 ? (toolCalls.length > 0 ? null : "") : partsToContent(parts),
    };
    if (toolCalls.length > 0) message.tool_calls = toolCalls;
    messages.push(message);
  }

  const request: ChatRequest = { model: body.model, messages, max_tokens: body.max_tokens };
  if (body.temperature !== undefined) request.temperature = body.temperature;
  if (body.top_p !== undefined) request.top_p = body.top_p;
  if (body.stop_sequences !== undefined && body.stop_sequences.length > 0) request.stop = body.stop_sequences;
  if (body.stream !== undefined) request.stream = body.stream;
  if (body.metadata?.user_id) request.user = body.metadata.user_id;
  if (body.tools !== undefined && body.tools.length > 0) {
    request.tools = body.tools.map((tool) => ({
      type: "function",
      function: {
        name: tool.name,
        ...(tool.description !== undefined ? { description: tool.description } : {}),
        parameters: tool.input_schema,
      },
    }));
  }
  if (body.tool_choice !== undefined) {
    request.tool_choice = fromToolChoice(body.tool_choice);
    if ("disable_parallel_tool_use" in body.tool_choice && body.tool_choice.disable_parallel_tool_use) {
      request.parallel_tool_calls = false;
    }
  }
  return request;
}

/** Anthropic's `stop_reason` for a canonical finish reason. */
export function toAnthropicStopReason(
  reason: FinishReason,
): "end_turn" | "max_tokens" | "tool_use" | "refusal" {
  switch (reason) {
    case "stop":
      return "end_turn";
    case "length":
      return "max_tokens";
    case "tool_calls":
      return "tool_use";
    case "content_filter":
      return "refusal";
  }
}

/**
 * A tool call's arguments as an Anthropic `input` object. A model (usually a local one) can emit
 * arguments that are not a JSON object; rather than drop them silently they are handed over under
 * `_raw_arguments`, which a client's tool code will reject visibly.
 */
function toolInput(args: string): Record<string, unknown> {
  if (args.trim() === "") return {};
  try {
    const parsed: unknown = JSON.parse(args);
    if (parsed !== null && typeof parsed === "object" && !Array.isArray(parsed)) {
      return parsed as Record<string, unknown>;
    }
  } catch {
    // fall through to the raw form
  }
  return { _raw_arguments: args };
}

/** Anthropic's `message` object for a canonical result (tool-use ids are passed through unchanged). */
export function toAnthropicResponse(result: ChatResult, meta: ClientResponseMeta): Record<string, unknown> {
  const content: Record<string, unknown>[] = [];
  if (result.content !== null && result.content !== "") {
    content.push({ type: "text", text: result.content, citations: null });
  }
  for (const call of result.tool_calls) {
    content.push({
      type: "tool_use",
      id: call.id,
      name: call.function.name,
      input: toolInput(call.function.arguments),
    });
  }
  return {
    id: meta.id,
    type: "message",
    role: "assistant",
    model: meta.model,
    content,
    stop_reason: toAnthropicStopReason(result.finish_reason),
    stop_sequence: null,
    usage: { input_tokens: result.usage.prompt_tokens, output_tokens: result.usage.completion_tokens },
  };
}

/**
 * Anthropic's error type for an HTTP status. 503 and 529 say "overloaded, try again or elsewhere";
 * 502, 504 and any other 5xx are `api_error`; any other 4xx is `invalid_request_error`.
 */
export function anthropicErrorType(status: number): string {
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
    case 503:
    case 529:
      return "overloaded_error";
  }
  return status >= 500 ? "api_error" : "invalid_request_error";
}

/** Anthropic's error body for a client-side error (`{"type":"error","error":{"type","message"}}`). */
export function anthropicErrorBody(
  info: ClientErrorInfo,
): { type: "error"; error: { type: string; message: string; code: string } } {
  // `code` is our reason code, as on /v1/chat/completions; Anthropic's SDKs keep unknown members.
  return {
    type: "error",
    error: { type: anthropicErrorType(info.status), message: info.message, code: info.code },
  };
}

/** Options for `AnthropicStreamEncoder`. */
export interface AnthropicStreamEncoderOptions {
  /** Prompt tokens to report in `message_start`, when known before the answer starts. */
  inputTokens?: number;
}

/** Encodes canonical stream events as Anthropic SSE (`event:` line plus a data `type` that matches it). */
export class AnthropicStreamEncoder implements ClientStreamEncoder {
  #meta: ClientResponseMeta;
  #inputTokens: number;
  #encoder = new TextEncoder();
  #nextBlock = 0;
  #open: { index: number; kind: "text" | "tool_use" } | null = null;
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

  #closeOpen(): string {
    if (this.#open === null) return "";
    const out = this.#event("content_block_stop", { index: this.#open.index });
    this.#open = null;
    return out;
  }

  /** `message_start` with an empty content list. */
  start(): Uint8Array {
    return this.#encoder.encode(this.#event("message_start", {
      message: {
        id: this.#meta.id,
        type: "message",
        role: "assistant",
        model: this.#meta.model,
        content: [],
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: this.#inputTokens, output_tokens: 0 },
      },
    }));
  }

  /** Content blocks and deltas for one canonical event. */
  encode(event: StreamEvent): Uint8Array {
    let out = "";
    switch (event.type) {
      case "text": {
        if (event.text === "") break;
        if (this.#open?.kind !== "text") {
          out += this.#closeOpen();
          this.#open = { index: this.#nextBlock++, kind: "text" };
          out += this.#event("content_block_start", {
            index: this.#open.index,
            content_block: { type: "text", text: "" },
          });
        }
        out += this.#event("content_block_delta", {
          index: this.#open.index,
          delta: { type: "text_delta", text: event.text },
        });
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
        if (event.usage) usage.input_tokens = event.usage.prompt_tokens;
        out += this.#event("message_delta", {
          delta: { stop_reason: toAnthropicStopReason(event.finish_reason), stop_sequence: null },
          usage,
        });
        break;
      }
    }
    return this.#encoder.encode(out);
  }

  /** `message_stop`, ending a successful stream. */
  done(): Uint8Array {
    return this.#encoder.encode(this.#closeOpen() + this.#event("message_stop", {}));
  }

  /** `event: error`, which Anthropic SDKs raise as an `APIError`. */
  error(info: ClientErrorInfo): Uint8Array {
    return this.#encoder.encode(encodeSseEvent(JSON.stringify(anthropicErrorBody(info)), "error"));
  }
}
