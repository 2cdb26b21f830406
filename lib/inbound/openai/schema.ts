/**
 * The inbound OpenAI chat-completions body (`POST /v1/chat/completions`): its zod schema, the fields the
 * router refuses by name, and the nulls SDKs send for "not set". `parse.ts` admits a body through them.
 */
import { z } from "zod";
import type { ChatRequest } from "../../canonical/mod.ts";

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

// Every object inside the request is strict: an unknown member is an `unrecognized_keys` issue, which
// `parseChatBody` turns into a 400 naming its path (or leaves out, for the echoes of `ECHOED_MEMBERS`).
const contentPartSchema = z.discriminatedUnion("type", [
  z.strictObject({ text: z.string(), type: z.literal("text") }),
  z.strictObject({
    image_url: z.strictObject({ detail: z.enum(["auto", "low", "high"]).optional(), url: z.string().min(1) }),
    type: z.literal("image_url"),
  }),
]);
const contentSchema = z.union([z.string(), z.array(contentPartSchema)]);

const toolCallSchema = z.strictObject({
  function: z.strictObject({ arguments: z.string(), name: z.string().min(1) }),
  id: z.string().min(1),
  type: z.literal("function"),
});

const messageSchema = z.discriminatedUnion("role", [
  z.strictObject({
    content: contentSchema,
    name: z.string().optional(),
    role: z.enum(["system", "developer"]),
  }),
  z.strictObject({ content: contentSchema, name: z.string().optional(), role: z.literal("user") }),
  z.strictObject({
    // An assistant turn that only called tools may leave its content out; it reads as null.
    content: contentSchema.nullable().default(null),
    name: z.string().optional(),
    role: z.literal("assistant"),
    tool_calls: z.array(toolCallSchema).optional(),
  }),
  z.strictObject({
    content: contentSchema,
    name: z.string().optional(),
    role: z.literal("tool"),
    tool_call_id: z.string().min(1),
  }),
]);

const toolSchema = z.strictObject({
  function: z.strictObject({
    description: z.string().optional(),
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "tool names use letters, digits, _ and -, at most 64"),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().optional(),
  }),
  type: z.literal("function"),
});

const toolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.strictObject({ function: z.strictObject({ name: z.string().min(1) }), type: z.literal("function") }),
]);

const responseFormatSchema = z.discriminatedUnion("type", [
  z.strictObject({ type: z.literal("text") }),
  z.strictObject({ type: z.literal("json_object") }),
  z.strictObject({
    json_schema: z.strictObject({
      // OpenAI's own member: what the format is for, read by the model (sent to OpenAI as it came).
      description: z.string().optional(),
      name: z.string().min(1),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().optional(),
    }),
    type: z.literal("json_schema"),
  }),
]);

const predictionSchema = z.strictObject({
  content: z.union([z.string(), z.array(z.strictObject({ text: z.string(), type: z.literal("text") }))]),
  type: z.literal("content"),
});

/**
 * The inbound OpenAI chat-completions body: every field OpenAI defines that the router carries. A bad
 * value is a 400 that names it. Parse `admitChatFields(body)`, which refuses by name the fields OpenAI
 * defines that the router cannot honour (`REFUSED_FIELDS`) and fields no API defines.
 */
export const chatRequestSchema = z.object({
  frequency_penalty: z.number().min(-2).max(2).optional(),
  logit_bias: z.record(
    z.string().regex(/^\d{1,9}$/, "logit_bias keys are token ids"),
    z.number().min(-100).max(100),
  )
    .optional(),
  logprobs: z.boolean().optional(),
  max_completion_tokens: z.number().int().positive().optional(),
  max_tokens: z.number().int().positive().optional(),
  messages: z.array(messageSchema).min(1, "messages must hold at least one message"),
  metadata: z.record(z.string().max(64), z.string().max(512)).optional(),
  modalities: z.array(z.literal("text")).optional(),
  model: nameSchema.min(1).optional(),
  n: z.number().int().min(1).max(1).optional(),
  parallel_tool_calls: z.boolean().optional(),
  prediction: predictionSchema.optional(),
  presence_penalty: z.number().min(-2).max(2).optional(),
  prompt_cache_key: nameSchema.optional(),
  reasoning_effort: z.enum(["none", "minimal", "low", "medium", "high", "xhigh"]).optional(),
  response_format: responseFormatSchema.optional(),
  safety_identifier: nameSchema.optional(),
  seed: z.number().int().optional(),
  service_tier: z.enum(["auto", "default", "flex", "scale", "priority"]).optional(),
  stop: z.union([
    stopStringSchema,
    z.array(stopStringSchema).max(MAX_STOP_STRINGS, `at most ${MAX_STOP_STRINGS} stop strings`),
  ]).optional(),
  store: z.boolean().optional(),
  stream: z.boolean().optional(),
  stream_options: z.strictObject({ include_usage: z.boolean().optional() }).optional(),
  temperature: z.number().min(0).max(2).optional(),
  tool_choice: toolChoiceSchema.optional(),
  tools: z.array(toolSchema).optional(),
  top_logprobs: z.number().int().min(0).max(20).optional(),
  top_p: z.number().min(0).max(1).optional(),
  user: nameSchema.optional(),
  verbosity: z.enum(["low", "medium", "high"]).optional(),
});

/**
 * Fields OpenAI's API defines that the router refuses by name (400 `UNSUPPORTED_FIELD`, `param` the
 * field), each with why and what to send instead.
 */
export const REFUSED_FIELDS: Readonly<Record<string, string>> = {
  audio:
    "audio asks for a spoken answer, and the router answers in text only; remove audio, or call OpenAI directly for audio",
  function_call:
    "function_call is the deprecated form of tool_choice, and the router speaks only the current one; send tool_choice instead",
  functions:
    "functions is the deprecated form of tools, and the router speaks only the current one; send tools instead",
  web_search_options:
    "web_search_options asks OpenAI's search models to search the web, which the router cannot route; remove it",
};

/** Every top-level field the OpenAI dialect knows: the ones it carries and the ones it refuses by name. */
export const KNOWN_CHAT_FIELDS: ReadonlySet<string> = new Set([
  ...Object.keys(chatRequestSchema.shape),
  ...Object.keys(REFUSED_FIELDS),
]);

/** Top-level fields that SDKs send as `null` to mean "not set". */
const NULLABLE_FIELDS = [
  "audio",
  "frequency_penalty",
  "function_call",
  "functions",
  "logit_bias",
  "logprobs",
  "max_completion_tokens",
  "max_tokens",
  "metadata",
  "modalities",
  "n",
  "prediction",
  "presence_penalty",
  "prompt_cache_key",
  "reasoning_effort",
  "safety_identifier",
  "seed",
  "service_tier",
  "stop",
  "store",
  "stream",
  "stream_options",
  "temperature",
  "top_logprobs",
  "top_p",
  "verbosity",
  "web_search_options",
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
