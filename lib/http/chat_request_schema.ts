import { z } from "zod";
import type { ChatRequest } from "../providers/mod.ts";

// Every object lists its members in RFC 8785 (sorted) order: zod emits members in shape order, so a
// parsed request is already canonical and its input hash takes the native JSON.stringify path. And no
// field carries a `.transform()`: a transform on any member takes zod off its compiled fast path for the
// whole object (about ten times slower here); nulls are dropped before parsing instead (see
// `withoutNullFields`).

/**
 * Longest model name, stop string and `user` the router takes (characters). Real names and stop strings
 * are far shorter; the cap keeps what a record holds about them bounded (see docs/security.md).
 */
export const MAX_CLIENT_NAME_CHARS = 256;
/** Most stop strings one request may send (OpenAI's own limit). */
export const MAX_STOP_STRINGS = 4;

const nameSchema = z.string().max(MAX_CLIENT_NAME_CHARS, `at most ${MAX_CLIENT_NAME_CHARS} characters`);
const stopStringSchema = z.string().max(
  MAX_CLIENT_NAME_CHARS,
  `a stop string has at most ${MAX_CLIENT_NAME_CHARS} characters`,
);

const contentPartSchema = z.discriminatedUnion("type", [
  z.object({ text: z.string(), type: z.literal("text") }),
  z.object({
    image_url: z.object({ detail: z.enum(["auto", "low", "high"]).optional(), url: z.string().min(1) }),
    type: z.literal("image_url"),
  }),
]);
const contentSchema = z.union([z.string(), z.array(contentPartSchema)]);

const toolCallSchema = z.object({
  function: z.object({ arguments: z.string(), name: z.string().min(1) }),
  id: z.string().min(1),
  type: z.literal("function"),
});

const messageSchema = z.discriminatedUnion("role", [
  z.object({ content: contentSchema, name: z.string().optional(), role: z.enum(["system", "developer"]) }),
  z.object({ content: contentSchema, name: z.string().optional(), role: z.literal("user") }),
  z.object({
    // An assistant turn that only called tools may leave its content out; it reads as null.
    content: contentSchema.nullable().default(null),
    name: z.string().optional(),
    role: z.literal("assistant"),
    tool_calls: z.array(toolCallSchema).optional(),
  }),
  z.object({
    content: contentSchema,
    name: z.string().optional(),
    role: z.literal("tool"),
    tool_call_id: z.string().min(1),
  }),
]);

const toolSchema = z.object({
  function: z.object({
    description: z.string().optional(),
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "tool names use letters, digits, _ and -, at most 64"),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().optional(),
  }),
  type: z.literal("function"),
});

const toolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ function: z.object({ name: z.string().min(1) }), type: z.literal("function") }),
]);

const responseFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    json_schema: z.object({
      name: z.string().min(1),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().optional(),
    }),
    type: z.literal("json_schema"),
  }),
]);

/**
 * The inbound OpenAI chat-completions body. Unknown top-level fields are dropped (SDKs add new ones
 * often); known fields are checked, and a bad one is a 400 that names it. Parse `withoutNullFields(body)`.
 */
export const chatRequestSchema = z.object({
  frequency_penalty: z.number().min(-2).max(2).optional(),
  max_completion_tokens: z.number().int().positive().optional(),
  max_tokens: z.number().int().positive().optional(),
  messages: z.array(messageSchema).min(1, "messages must hold at least one message"),
  model: nameSchema.min(1).optional(),
  n: z.number().int().min(1).max(1).optional(),
  parallel_tool_calls: z.boolean().optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  response_format: responseFormatSchema.optional(),
  seed: z.number().int().optional(),
  stop: z.union([
    stopStringSchema,
    z.array(stopStringSchema).max(MAX_STOP_STRINGS, `at most ${MAX_STOP_STRINGS} stop strings`),
  ]).optional(),
  stream: z.boolean().optional(),
  stream_options: z.object({ include_usage: z.boolean().optional() }).optional(),
  temperature: z.number().min(0).max(2).optional(),
  tool_choice: toolChoiceSchema.optional(),
  tools: z.array(toolSchema).optional(),
  top_p: z.number().min(0).max(1).optional(),
  user: nameSchema.optional(),
});

/** Top-level fields that SDKs send as `null` to mean "not set". */
const NULLABLE_FIELDS = [
  "frequency_penalty",
  "max_completion_tokens",
  "max_tokens",
  "n",
  "presence_penalty",
  "seed",
  "stop",
  "stream",
  "stream_options",
  "temperature",
  "top_p",
] as const;

type Json = Record<string, unknown>;

function isObject(value: unknown): value is Json {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

/** `holder` with its `key` object's `strict: null` left out, or null when there is nothing to drop. */
function withoutNullStrict(holder: unknown, key: string): Json | null {
  if (!isObject(holder)) return null;
  const inner = holder[key];
  if (!isObject(inner) || inner.strict !== null) return null;
  const { strict: _null, ...rest } = inner;
  return { ...holder, [key]: rest };
}

/**
 * The body with `null` top-level settings and tool / json_schema `strict: null` left out, which is what
 * SDKs mean by them. Returns the body itself when nothing is null (the common case costs no copy).
 */
export function withoutNullFields(body: Json): Json {
  let copy: Json | null = null;
  const own = () => (copy ??= { ...body });
  for (const field of NULLABLE_FIELDS) {
    if (body[field] === null) delete own()[field];
  }
  const tools = body.tools;
  if (Array.isArray(tools) && tools.some((tool) => withoutNullStrict(tool, "function") !== null)) {
    own().tools = tools.map((tool) => withoutNullStrict(tool, "function") ?? tool);
  }
  const format = withoutNullStrict(body.response_format, "json_schema");
  if (format !== null) own().response_format = format;
  return copy ?? body;
}

/** Compile-time proof that the schema's output is the canonical request. */
export type ParsedChatRequest = z.infer<typeof chatRequestSchema>;
const _sameShape: (r: ParsedChatRequest) => ChatRequest = (r) => r;
