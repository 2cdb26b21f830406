/**
 * The router's inbound Anthropic Messages endpoint (`POST /v1/messages`): the request schema, the fields
 * the router refuses by name, and the types of what it accepts. `to_canonical.ts` translates a parsed body.
 */

import { isFieldName } from "../../client_text.ts";
import { z } from "zod";

/**
 * Anthropic Messages API fields the router does not carry, each with why and what to do: a 400
 * `UNSUPPORTED_FIELD` naming the field (docs/protocols.md, the Anthropic table).
 */
export const ANTHROPIC_REFUSED_FIELDS: Readonly<Record<string, string>> = {
  container:
    "container names an Anthropic code-execution container, and the router runs no server tools; remove it",
  context_management:
    "context_management asks Anthropic to edit the conversation server-side, which no other provider does; remove it and trim the history yourself",
  mcp_servers:
    "mcp_servers asks Anthropic to call MCP servers itself, and the router runs no server tools; remove it and pass the tools you need as tools",
  service_tier:
    "service_tier picks Anthropic's capacity tier, which the router does not choose for the other providers; remove it",
};

/** The message for an unknown top-level field: why, for an Anthropic field the router does not carry. */
function unknownTopField(issue: { code: string; keys?: unknown }): string | undefined {
  if (issue.code !== "unrecognized_keys" || !Array.isArray(issue.keys)) return undefined;
  const key = String(issue.keys[0]);
  if (Object.hasOwn(ANTHROPIC_REFUSED_FIELDS, key)) return ANTHROPIC_REFUSED_FIELDS[key];
  return isFieldName(key)
    ? `${key} is not a field of Anthropic's Messages API the router knows, nor one of its own (routing_contract, authority); remove it or fix its spelling`
    : "the request has a top-level field that Anthropic's Messages API does not define; remove it";
}

/**
 * A closed object: an unknown member is an `unrecognized_keys` issue, which the HTTP layer makes a 400
 * `UNSUPPORTED_FIELD` whose `param` is its JSON path (`messages[0].content[1].foo`).
 */
function closed<T extends z.core.$ZodLooseShape>(shape: T) {
  return z.strictObject(shape);
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
/** Extended-thinking blocks an SDK echoes back from an earlier answer (signed, or redacted). */
const thinkingBlockSchema = closed({
  type: z.literal("thinking"),
  thinking: z.string(),
  signature: z.string(),
  cache_control: cacheControl,
});
const redactedThinkingBlockSchema = closed({
  type: z.literal("redacted_thinking"),
  data: z.string(),
  cache_control: cacheControl,
});

const assistantBlockSchema = z.discriminatedUnion("type", [
  textBlockSchema,
  toolUseBlockSchema,
  thinkingBlockSchema,
  redactedThinkingBlockSchema,
]);

const thinkingSchema = z.discriminatedUnion("type", [
  closed({ type: z.literal("enabled"), budget_tokens: z.number().int().min(1) }),
  closed({ type: z.literal("disabled") }),
  closed({ type: z.literal("adaptive") }),
]);

/** Anthropic structured outputs: the answer is JSON that conforms to `format.schema`. */
const outputConfigSchema = closed({
  format: closed({ type: z.literal("json_schema"), schema: z.record(z.string(), z.unknown()) }).optional(),
});

const toolNamePattern = /^[a-zA-Z0-9_-]{1,64}$/;

/** Longest model name, stop sequence and `metadata.user_id` accepted (characters; Anthropic's own `user_id` limit). */
export const MAX_ANTHROPIC_NAME_CHARS = 256;
/** Most stop sequences one request may send. */
export const MAX_STOP_SEQUENCES = 16;

const boundedName = z.string().max(
  MAX_ANTHROPIC_NAME_CHARS,
  `at most ${MAX_ANTHROPIC_NAME_CHARS} characters`,
);

/**
 * Schema of an inbound Anthropic Messages request (without the router's extension fields). An unknown
 * top-level field is an `unrecognized_keys` issue at the root whose message says why (the HTTP layer makes
 * it a 400 `UNSUPPORTED_FIELD` naming the field).
 */
export const anthropicMessagesRequestSchema = z.strictObject({
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
    // @ai-sdk/anthropic adds it to every tool when streaming; Anthropic streams the tool input unbuffered.
    eager_input_streaming: z.boolean().nullable().optional(),
    strict: z.boolean().optional(),
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
  thinking: thinkingSchema.optional(),
  output_config: outputConfigSchema.optional(),
}, { error: unknownTopField });

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
/** An image block (in a user turn or a `tool_result`). */
export type AnthropicImageBlock = z.infer<typeof imageBlockSchema>;
/** A `tool_result` block of a user turn. */
export type AnthropicToolResultBlock = z.infer<typeof toolResultBlockSchema>;
