import { z } from "zod";
import type { ChatRequest } from "../providers/mod.ts";

const contentPartSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text"), text: z.string() }),
  z.object({
    type: z.literal("image_url"),
    image_url: z.object({ url: z.string().min(1), detail: z.enum(["auto", "low", "high"]).optional() }),
  }),
]);
const contentSchema = z.union([z.string(), z.array(contentPartSchema)]);

const toolCallSchema = z.object({
  id: z.string().min(1),
  type: z.literal("function"),
  function: z.object({ name: z.string().min(1), arguments: z.string() }),
});

const messageSchema = z.discriminatedUnion("role", [
  z.object({ role: z.enum(["system", "developer"]), content: contentSchema, name: z.string().optional() }),
  z.object({ role: z.literal("user"), content: contentSchema, name: z.string().optional() }),
  z.object({
    role: z.literal("assistant"),
    content: contentSchema.nullable().optional().transform((c) => c ?? null),
    name: z.string().optional(),
    tool_calls: z.array(toolCallSchema).optional(),
  }),
  z.object({
    role: z.literal("tool"),
    content: contentSchema,
    tool_call_id: z.string().min(1),
    name: z.string().optional(),
  }),
]);

const toolSchema = z.object({
  type: z.literal("function"),
  function: z.object({
    name: z.string().regex(/^[a-zA-Z0-9_-]{1,64}$/, "tool names use letters, digits, _ and -, at most 64"),
    description: z.string().optional(),
    parameters: z.record(z.string(), z.unknown()).optional(),
    strict: z.boolean().nullable().optional().transform((s) => s ?? undefined),
  }),
});

const toolChoiceSchema = z.union([
  z.enum(["none", "auto", "required"]),
  z.object({ type: z.literal("function"), function: z.object({ name: z.string().min(1) }) }),
]);

const responseFormatSchema = z.discriminatedUnion("type", [
  z.object({ type: z.literal("text") }),
  z.object({ type: z.literal("json_object") }),
  z.object({
    type: z.literal("json_schema"),
    json_schema: z.object({
      name: z.string().min(1),
      schema: z.record(z.string(), z.unknown()).optional(),
      strict: z.boolean().nullable().optional().transform((s) => s ?? undefined),
    }),
  }),
]);

const optionalNumber = (schema: z.ZodNumber) => schema.nullable().optional().transform((v) => v ?? undefined);

/**
 * The inbound OpenAI chat-completions body. Unknown top-level fields are dropped (SDKs add new ones
 * often); known fields are checked, and a bad one is a 400 that names it.
 */
export const chatRequestSchema = z.object({
  model: z.string().min(1).optional(),
  messages: z.array(messageSchema).min(1, "messages must hold at least one message"),
  temperature: optionalNumber(z.number().min(0).max(2)),
  top_p: optionalNumber(z.number().min(0).max(1)),
  n: optionalNumber(z.number().int().min(1).max(1)),
  stream: z.boolean().nullable().optional().transform((v) => v ?? undefined),
  stream_options: z.object({ include_usage: z.boolean().optional() }).nullable().optional()
    .transform((v) => v ?? undefined),
  stop: z.union([z.string(), z.array(z.string()).max(4)]).nullable().optional().transform((v) =>
    v ?? undefined
  ),
  max_tokens: optionalNumber(z.number().int().positive()),
  max_completion_tokens: optionalNumber(z.number().int().positive()),
  seed: optionalNumber(z.number().int()),
  presence_penalty: optionalNumber(z.number().min(-2).max(2)),
  frequency_penalty: optionalNumber(z.number().min(-2).max(2)),
  user: z.string().optional(),
  tools: z.array(toolSchema).optional(),
  tool_choice: toolChoiceSchema.optional(),
  parallel_tool_calls: z.boolean().optional(),
  response_format: responseFormatSchema.optional(),
});

/** Compile-time proof that the schema's output is the canonical request. */
export type ParsedChatRequest = z.infer<typeof chatRequestSchema>;
const _sameShape: (r: ParsedChatRequest) => ChatRequest = (r) => r;
