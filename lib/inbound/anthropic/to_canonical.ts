/**
 * An inbound Anthropic Messages request → the canonical request, and the 400 for one that does not parse.
 */

import {
  attachNativeBody,
  type ChatMessage,
  type ChatRequest,
  type ContentPart,
  type ThinkingConfig,
  type ToolCall,
  type ToolChoice,
} from "../../canonical/mod.ts";
import { isFieldName } from "../../client_text.ts";
import { type Issue, unknownMemberError, validationError } from "../issues.ts";
import { InboundError } from "../types.ts";
import {
  type AnthropicImageBlock,
  type AnthropicMessagesRequest,
  anthropicMessagesRequestSchema,
  type AnthropicToolChoice,
  type AnthropicToolResultBlock,
} from "./schema.ts";

function imagePart(block: AnthropicImageBlock): ContentPart {
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

function toolResultMessage(block: AnthropicToolResultBlock): ChatMessage {
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
 * Translates a parsed inbound Anthropic request into the canonical request, which keeps the client's
 * body for Anthropic (`attachNativeBody`: when Anthropic serves, the
 * adapter sends it as it came, with only `model` and `stream` set, so nothing is lost in translation). For the other upstreams: `top_k` is carried (Ollama
 * `options.top_k`; decide() keeps it away from OpenAI), `cache_control` has no equivalent and is not
 * sent, thinking blocks of earlier answers are not content, a
 * `tool_result` with `is_error` starts with "Error:", and `output_config.format` is the JSON Schema
 * `response_format`.
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
      else if (block.type === "tool_use") {
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
  if (body.top_k !== undefined) request.top_k = body.top_k;
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
        ...(tool.strict !== undefined ? { strict: tool.strict } : {}),
      },
    }));
  }
  if (body.tool_choice !== undefined) {
    request.tool_choice = fromToolChoice(body.tool_choice);
    if ("disable_parallel_tool_use" in body.tool_choice && body.tool_choice.disable_parallel_tool_use) {
      request.parallel_tool_calls = false;
    }
  }
  if (body.thinking !== undefined) request.thinking = body.thinking as ThinkingConfig;
  const format = body.output_config?.format;
  if (format !== undefined) {
    request.response_format = { type: "json_schema", json_schema: { name: "output", schema: format.schema } };
  }
  return attachNativeBody(request, "anthropic_messages", body);
}

/**
 * An unknown top-level field of an Anthropic request is refused by name (400 `UNSUPPORTED_FIELD`, `param`
 * the field while it looks like one); the record keeps a message without the client's text.
 */
function anthropicParseError(issues: readonly Issue[]): InboundError {
  const issue = issues[0];
  if (issue.code !== "unrecognized_keys" || issue.path.length !== 0 || !Array.isArray(issue.keys)) {
    return unknownMemberError(issues, "Anthropic's Messages API") ?? validationError(issues);
  }
  const key = String(issue.keys[0]);
  return new InboundError(400, "UNSUPPORTED_FIELD", issue.message, {
    param: isFieldName(key) ? key : null,
    recordedMessage: "the request has a top-level field the router does not carry on /v1/messages; remove it",
  });
}

/** The canonical request for an Anthropic body (router extension fields already removed); throws `InboundError`. */
export function parseAnthropicRequest(body: Record<string, unknown>): ChatRequest {
  const parsed = anthropicMessagesRequestSchema.safeParse(body);
  if (!parsed.success) throw anthropicParseError(parsed.error.issues as Issue[]);
  try {
    return fromAnthropicRequest(parsed.data);
  } catch (error) {
    const message = error instanceof Error ? error.message : "the request cannot be translated";
    throw new InboundError(400, "INVALID_REQUEST", message);
  }
}
