import { z } from "zod";
import { healthPolicySchema } from "../health/mod.ts";
import { slotPolicySchema } from "../slot/mod.ts";
import { authorityPolicySchema, clientKeysPolicySchema } from "../authority/mod.ts";
import { capabilitySchema, classificationSchema, providerNameSchema } from "./routing_contract.ts";

/** One model the policy knows: where it runs, what it can do, what it costs. */
export const modelPolicySchema = z.strictObject({
  name: z.string().min(1),
  provider: providerNameSchema,
  capabilities: z.array(capabilitySchema).default([]),
  context_window: z.number().int().positive(),
  price_per_mtok: z.strictObject({
    input: z.number().nonnegative(),
    output: z.number().nonnegative(),
  }).prefault({ input: 0, output: 0 }),
  heavy: z.boolean().default(false),
});
/** A model entry of the server policy. */
export type ModelPolicy = z.infer<typeof modelPolicySchema>;

/** The server policy (`HI_POLICY`): providers, models, defaults and limits. Requests can only tighten it. */
export const policySchema = z.strictObject({
  $schema: z.string().optional(),
  policy_version: z.string().min(1),
  defaults: z.strictObject({
    classification: classificationSchema.default("INTERNAL"),
    /** No request can declare its data less sensitive than this. */
    classification_floor: classificationSchema.default("PUBLIC"),
    latency: z.enum(["interactive", "batch"]).default("interactive"),
    provider_allowlist: z.array(providerNameSchema).min(1).default(["local", "anthropic", "openai"]),
    local_router_model: z.string().min(1).default("qwen3:8b"),
    local_deep_model: z.string().min(1).default("qwen3:32b"),
    /** Used when the client gives no max tokens and the provider requires one (Anthropic). */
    max_tokens: z.number().int().positive().default(1024),
  }).prefault({}),
  /** Classifications whose requests may go to a cloud provider. */
  cloud_classifications: z.array(classificationSchema).default(["PUBLIC", "INTERNAL"]),
  /** Classifications whose inputs are captured for replay. */
  capture_classifications: z.array(classificationSchema).default(["PUBLIC", "INTERNAL"]),
  models: z.array(modelPolicySchema).default([]),
  limits: z.strictObject({
    max_cost_usd: z.number().nonnegative().nullable().default(null),
    max_body_bytes: z.number().int().positive().default(4 * 1024 * 1024),
    first_byte_timeout_ms: z.number().int().positive().default(30_000),
    total_timeout_ms: z.number().int().positive().default(300_000),
    /** Prompts estimated above this many tokens require `long_context`. */
    long_context_tokens: z.number().int().positive().default(32_000),
    /** Context window assumed for installed local models the policy does not list. */
    unlisted_local_context_window: z.number().int().positive().default(8192),
  }).prefault({}),
  ollama: z.strictObject({
    keep_alive: z.union([z.string(), z.number()]).optional(),
  }).prefault({}),
  health: healthPolicySchema.prefault({}),
  slot: slotPolicySchema.prefault({}),
  authority: authorityPolicySchema.prefault({}),
  client_keys: clientKeysPolicySchema.default([]),
});
/** A parsed server policy with every default applied. */
export type Policy = z.infer<typeof policySchema>;

/** The built-in policy used when `HI_POLICY` is not set (documented in docs/configuration.md). */
export const BUILTIN_POLICY_SOURCE = {
  policy_version: "builtin-2026-11-27",
  models: [
    {
      name: "qwen3:8b",
      provider: "local",
      capabilities: ["tool_calls", "json_mode"],
      context_window: 32768,
      heavy: false,
    },
    {
      name: "qwen3:32b",
      provider: "local",
      capabilities: ["tool_calls", "json_mode"],
      context_window: 32768,
      heavy: true,
    },
    {
      name: "claude-sonnet-4-5",
      provider: "anthropic",
      capabilities: ["tool_calls", "long_context", "json_mode", "vision"],
      context_window: 200000,
      price_per_mtok: { input: 3, output: 15 },
    },
    {
      name: "gpt-4o-mini",
      provider: "openai",
      capabilities: ["tool_calls", "long_context", "json_mode", "vision"],
      context_window: 128000,
      price_per_mtok: { input: 0.15, output: 0.6 },
    },
  ],
} as const;

/** Parses a policy document, naming the first bad field in the error. */
export function parsePolicy(source: unknown): Policy {
  const parsed = policySchema.safeParse(source);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const where = issue.path.length ? issue.path.join(".") : "(root)";
    throw new Error(`policy field ${where} is invalid: ${issue.message}; fix the policy file`);
  }
  return parsed.data;
}

/** Reads the policy from `path` (JSON), or returns the built-in policy when no path is given. */
export async function loadPolicy(path: string | undefined): Promise<Policy> {
  if (!path) return parsePolicy(BUILTIN_POLICY_SOURCE);
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    throw new Error(`cannot read the policy file ${path} (${(error as Error).message}); check HI_POLICY`);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    throw new Error(`the policy file ${path} is not valid JSON; fix its syntax`);
  }
  return parsePolicy(json);
}

/** The JSON Schema published at schemas/policy/POLICY_v1.json, derived from `policySchema`. */
export function policyJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(policySchema, { io: "input", target: "draft-2020-12" }) as Record<string, unknown>;
}
