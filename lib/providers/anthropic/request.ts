/**
 * Canonical (OpenAI chat) request → Anthropic Messages request body. Pure: no I/O, no clock; a request
 * that Anthropic cannot express faithfully is refused with a 400 `UpstreamError` instead of being
 * silently changed. A request that came in as Anthropic goes out as the client sent it.
 */

import {
  argumentsObject,
  type ChatMessage,
  type ChatRequest,
  type ContentPart,
  nativeBody,
} from "../../canonical/mod.ts";
import type {
  AnthropicAssistantBlock,
  AnthropicMessage,
  AnthropicMessagesBody,
  AnthropicTextOrImageBlock,
  AnthropicTool,
  AnthropicToolChoice,
  AnthropicUserBlock,
} from "./wire.ts";
import { UpstreamError } from "../types.ts";
import { unsupportedFieldError } from "../http_errors.ts";

/** Options for `toAnthropicRequest`. */
export interface AnthropicRequestOptions {
  /** Provider-side model name. */
  model: string;
  /** `max_tokens` when the client gave neither `max_completion_tokens` nor `max_tokens`. */
  defaultMaxTokens: number;
  /** Whether to ask for an SSE answer. */
  stream: boolean;
}

/**
 * How JSON mode reaches Anthropic, which has no JSON switch: as an instruction in `system`. The model
 * is asked, not forced; callers that promise JSON must validate the answer themselves.
 */
export type AnthropicJsonMode = "none" | "instructed";

/** Tells the caller whether `toAnthropicRequest` instructed (never enforced) JSON output for a request. */
export function anthropicJsonMode(request: ChatRequest): AnthropicJsonMode {
  const type = request.response_format?.type;
  return type === "json_object" || type === "json_schema" ? "instructed" : "none";
}

const unsupported = unsupportedFieldError;

function invalid(message: string, code: string, param: string): UpstreamError {
  return new UpstreamError(message, {
    status: 400,
    code,
    type: "invalid_request_error",
    fallback: false,
    param,
  });
}

const mediaTypes = new Set(["image/png", "image/jpeg", "image/gif", "image/webp"]);

function imageBlock(url: string, where: string): AnthropicTextOrImageBlock {
  if (/^https?:\/\//i.test(url)) return { type: "image", source: { type: "url", url } };
  const match = /^data:([^;,]+);base64,(.*)$/is.exec(url);
  if (match === null) {
    throw invalid(
      `${where} has an image that is neither an http(s) URL nor a base64 data URL; send one of those`,
      "UNSUPPORTED_IMAGE",
      "messages",
    );
  }
  let mediaType = match[1].toLowerCase();
  if (mediaType === "image/jpg") mediaType = "image/jpeg";
  if (!mediaTypes.has(mediaType)) {
    throw invalid(
      `${where} has an image of type ${match[1]}; anthropic accepts only png, jpeg, gif and webp`,
      "UNSUPPORTED_IMAGE",
      "messages",
    );
  }
  return {
    type: "image",
    source: {
      type: "base64",
      media_type: mediaType as "image/png" | "image/jpeg" | "image/gif" | "image/webp",
      data: match[2],
    },
  };
}

/** Text and image blocks of a user or tool message; empty text is skipped (Anthropic rejects it). */
function contentBlocks(content: string | ContentPart[] | null, where: string): AnthropicTextOrImageBlock[] {
  if (content === null) return [];
  if (typeof content === "string") return content === "" ? [] : [{ type: "text", text: content }];
  const blocks: AnthropicTextOrImageBlock[] = [];
  for (const part of content) {
    if (part.type === "text") {
      if (part.text !== "") blocks.push({ type: "text", text: part.text });
    } else blocks.push(imageBlock(part.image_url.url, where));
  }
  return blocks;
}

function instructionText(content: string | ContentPart[]): string {
  if (typeof content === "string") return content;
  return content.flatMap((part) => part.type === "text" ? [part.text] : []).join("\n");
}

function parseToolArguments(args: string, name: string, id: string): Record<string, unknown> {
  const parsed = argumentsObject(args);
  if (parsed !== undefined) return parsed;
  throw invalid(
    `tool call ${id} (${name}) has arguments that are not a JSON object; send its arguments as a JSON object string`,
    "INVALID_TOOL_ARGUMENTS",
    "messages",
  );
}

/** A turn being assembled; tool results are kept apart because Anthropic wants them first. */
interface PendingTurn {
  role: "user" | "assistant";
  results: AnthropicUserBlock[];
  blocks: (AnthropicUserBlock | AnthropicAssistantBlock)[];
}

function pushBlocks(
  turns: PendingTurn[],
  role: "user" | "assistant",
  blocks: PendingTurn["blocks"],
  results: AnthropicUserBlock[] = [],
): void {
  if (blocks.length === 0 && results.length === 0) return;
  const last = turns.at(-1);
  // Anthropic wants alternating turns; consecutive same-role messages become one turn.
  if (last !== undefined && last.role === role) {
    last.results.push(...results);
    last.blocks.push(...blocks);
  } else turns.push({ role, results: [...results], blocks: [...blocks] });
}

/** The text of the user turn put before a history that opens with the assistant (Anthropic rejects empty text). */
export const FIRST_TURN_USER_TEXT = "(continue)";

function convertMessages(messages: ChatMessage[]): { system: string[]; turns: AnthropicMessage[] } {
  const system: string[] = [];
  const pending: PendingTurn[] = [];
  messages.forEach((message, i) => {
    const where = `messages[${i}]`;
    switch (message.role) {
      case "system":
      case "developer": {
        // Anthropic has one place for instructions, before the conversation: a later one is hoisted there,
        // after the earlier ones (decide() records REWRITE_SYSTEM_HOISTED for this).
        const text = instructionText(message.content);
        if (text !== "") system.push(text);
        break;
      }
      case "user":
        pushBlocks(pending, "user", contentBlocks(message.content, where));
        break;
      case "assistant": {
        const blocks: AnthropicAssistantBlock[] = [];
        for (const block of contentBlocks(message.content, where)) {
          if (block.type !== "text") {
            throw invalid(
              `${where} is an assistant message with an image; images belong in user messages`,
              "UNSUPPORTED_IMAGE",
              "messages",
            );
          }
          blocks.push(block);
        }
        for (const call of message.tool_calls ?? []) {
          blocks.push({
            type: "tool_use",
            id: call.id,
            name: call.function.name,
            input: parseToolArguments(call.function.arguments, call.function.name, call.id),
          });
        }
        pushBlocks(pending, "assistant", blocks);
        break;
      }
      case "tool": {
        const blocks = contentBlocks(message.content, where);
        const onlyText = blocks.every((b) => b.type === "text");
        const result: AnthropicUserBlock = {
          type: "tool_result",
          tool_use_id: message.tool_call_id,
          content: onlyText ? blocks.map((b) => (b as { text: string }).text).join("") : blocks,
        };
        pushBlocks(pending, "user", [], [result]);
        break;
      }
    }
  });

  const turns: AnthropicMessage[] = pending.map((turn) =>
    turn.role === "user"
      ? { role: "user", content: [...turn.results, ...turn.blocks] as AnthropicUserBlock[] }
      : { role: "assistant", content: turn.blocks as AnthropicAssistantBlock[] }
  );
  // Anthropic requires the first turn to be the user's: a history that opens with the assistant gets the
  // minimal user turn before it (decide() records REWRITE_FIRST_TURN_USER for this).
  if (turns.length > 0 && turns[0].role === "assistant") {
    turns.unshift({ role: "user", content: [{ type: "text", text: FIRST_TURN_USER_TEXT }] });
  }
  return { system, turns };
}

function jsonInstruction(request: ChatRequest): string | null {
  const format = request.response_format;
  if (format === undefined || format.type === "text") return null;
  const base = "Respond with a single JSON object only: no prose before or after it and no code fences.";
  if (format.type === "json_object" || format.json_schema.schema === undefined) return base;
  return `${base} The object must conform to this JSON Schema (named "${format.json_schema.name}"):\n` +
    JSON.stringify(format.json_schema.schema);
}

/**
 * Refuses by name (`UNSUPPORTED_FIELD`, fallback-worthy) what Anthropic cannot honour: `temperature`
 * above 1, `top_p` other than 1 together with `temperature` (current models take one of the two),
 * `seed`, non-zero `presence_penalty` / `frequency_penalty`, `logprobs`, and a `reasoning_effort` other
 * than "none". Values that change nothing (`top_p` 1, penalties 0) are not sent.
 */
export function checkAnthropicSupport(request: ChatRequest): void {
  if (request.temperature !== undefined && request.temperature > 1) {
    throw unsupported(
      "temperature",
      `temperature ${request.temperature} is above anthropic's maximum of 1; send a temperature from 0 to 1, or allow another provider`,
    );
  }
  if (request.temperature !== undefined && request.top_p !== undefined && request.top_p !== 1) {
    throw unsupported(
      "top_p",
      "anthropic's current models take temperature or top_p, not both; send only one, or allow another provider",
    );
  }
  if (request.seed !== undefined) {
    throw unsupported("seed", "anthropic has no seed; leave seed out, or allow another provider");
  }
  for (const name of ["presence_penalty", "frequency_penalty"] as const) {
    const value = request[name];
    if (value !== undefined && value !== 0) {
      throw unsupported(name, `anthropic has no ${name}; leave it out or send 0, or allow another provider`);
    }
  }
  if (request.logprobs === true) {
    throw unsupported("logprobs", "anthropic returns no logprobs; leave logprobs out, or allow openai");
  }
  if (request.reasoning_effort !== undefined && request.reasoning_effort !== "none") {
    throw unsupported(
      "reasoning_effort",
      "anthropic takes no reasoning_effort (its extended thinking is the thinking field of /v1/messages); leave it out, or allow another provider",
    );
  }
}

/**
 * The client's own Anthropic body for this call: only `model` and `stream` are set, and thinking blocks
 * with an empty signature (reasoning a local model gave in an earlier answer, which Anthropic would
 * reject as unsigned) are left out.
 */
function nativeRequest(
  native: AnthropicMessagesBody,
  options: AnthropicRequestOptions,
): AnthropicMessagesBody {
  const { stream: _stream, ...rest } = native;
  const messages = rest.messages.map((turn): AnthropicMessage => {
    if (turn.role !== "assistant" || typeof turn.content === "string") return turn;
    const content = turn.content.filter((block) => block.type !== "thinking" || block.signature !== "");
    return content.length === turn.content.length ? turn : { role: "assistant", content };
  });
  const body: AnthropicMessagesBody = { ...rest, model: options.model, messages };
  if (options.stream) body.stream = true;
  return body;
}

/**
 * Builds the Anthropic Messages body for a canonical request. A request that came in on `/v1/messages`
 * is sent as the client sent it (see `nativeRequest`). Otherwise, after `checkAnthropicSupport`: system
 * and developer messages become `system` blocks, one each, in order, a later one hoisted there too, and a
 * history that opens with the assistant gets a `FIRST_TURN_USER_TEXT` user turn first (the two rewrites
 * decide() records as `REWRITE_SYSTEM_HOISTED` and `REWRITE_FIRST_TURN_USER`); not sent because Anthropic has
 * no equivalent and they change nothing it does: `stream_options`, message `name`s, tool `strict`,
 * `top_p` 1 beside `temperature`, penalties of 0. `response_format` JSON modes become a `system`
 * instruction (see `anthropicJsonMode`).
 */
export function toAnthropicRequest(
  request: ChatRequest,
  options: AnthropicRequestOptions,
): AnthropicMessagesBody {
  const native = nativeBody(request, "anthropic_messages") as AnthropicMessagesBody | undefined;
  if (native !== undefined) return nativeRequest(native, options);
  if (request.n !== undefined && request.n > 1) {
    throw invalid("n greater than 1 cannot be routed to anthropic; send n = 1", "UNSUPPORTED_PARAMETER", "n");
  }
  checkAnthropicSupport(request);
  const { system, turns } = convertMessages(request.messages);
  if (turns.length === 0) {
    throw invalid(
      "messages has no user or assistant content; send at least one non-empty user message",
      "INVALID_REQUEST",
      "messages",
    );
  }
  const instruction = jsonInstruction(request);
  if (instruction !== null) system.push(instruction);

  const body: AnthropicMessagesBody = {
    model: options.model,
    max_tokens: request.max_completion_tokens ?? request.max_tokens ?? options.defaultMaxTokens,
    messages: turns,
  };
  if (system.length > 0) body.system = system.map((text) => ({ type: "text" as const, text }));
  if (request.temperature !== undefined) body.temperature = request.temperature;
  // With temperature, only a top_p of 1 (no nucleus cut) gets here: checkAnthropicSupport refused the rest.
  if (request.top_p !== undefined && request.temperature === undefined) body.top_p = request.top_p;
  if (request.stop !== undefined) {
    const stops = typeof request.stop === "string" ? [request.stop] : request.stop;
    if (stops.length > 0) body.stop_sequences = stops;
  }
  if (request.user !== undefined) body.metadata = { user_id: request.user };
  if (request.tools !== undefined && request.tools.length > 0) {
    body.tools = request.tools.map((tool): AnthropicTool => ({
      name: tool.function.name,
      ...(tool.function.description !== undefined ? { description: tool.function.description } : {}),
      input_schema: { type: "object", ...tool.function.parameters } as AnthropicTool["input_schema"],
    }));
    const choice = toolChoice(request);
    if (choice !== undefined) body.tool_choice = choice;
  }
  if (options.stream) body.stream = true;
  return body;
}

function toolChoice(request: ChatRequest): AnthropicToolChoice | undefined {
  const choice = request.tool_choice;
  const noParallel = request.parallel_tool_calls === false ? { disable_parallel_tool_use: true } : {};
  if (choice === "none") return { type: "none" };
  if (choice === "required") return { type: "any", ...noParallel };
  if (typeof choice === "object") return { type: "tool", name: choice.function.name, ...noParallel };
  if (choice === "auto" || request.parallel_tool_calls === false) return { type: "auto", ...noParallel };
  return undefined;
}
