import { z } from "zod";
import {
  CLOUD_KEY_ENV,
  type CloudProvider,
  type ProviderKeys,
  providerKeys,
  PROVIDERS,
} from "../config/mod.ts";
import { healthPolicySchema } from "../health/mod.ts";
import { slotPolicySchema } from "../slot/mod.ts";
import { authorityPolicySchema, clientKeysPolicySchema } from "../authority/mod.ts";
import {
  capabilitySchema,
  classificationSchema,
  providerNameSchema,
  stricterClassification,
} from "./routing_contract.ts";

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
    provider_allowlist: z.array(providerNameSchema).min(1).default([...PROVIDERS]),
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
    /** Most client connections open at once; over it the oldest idle one is closed. */
    max_connections: z.number().int().positive().default(1024),
    /** A new connection must send a complete request head within this time. */
    header_timeout_ms: z.number().int().positive().default(10_000),
    /** The whole request body must arrive within this time. */
    body_timeout_ms: z.number().int().positive().default(60_000),
    /** A connection with no request in flight is closed after this time. */
    keep_alive_timeout_ms: z.number().int().positive().default(30_000),
    /** An upstream must send its first event (streams) or its whole answer (JSON) within this time. */
    first_byte_timeout_ms: z.number().int().positive().default(30_000),
    /** A streamed answer may pause this long between two upstream events. */
    stream_idle_timeout_ms: z.number().int().positive().default(30_000),
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
  /** Signed checkpoints of each day's EDR chain head (docs/configuration.md, governance/CAES_SPEC.md §10). */
  checkpoints: z.strictObject({
    /** How often a day's head that moved is checkpointed (and once more at shutdown). */
    interval_s: z.number().int().min(1).max(86_400).default(60),
    /** The environment variable holding the HMAC-SHA256 key; without it checkpoints are marked "unsigned". */
    hmac_secret_env: z.string()
      .regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "use an environment variable name like HI_CHECKPOINT_SECRET")
      .optional(),
    /** Names the key in each checkpoint line, so a rotated key can be told apart. */
    key_id: z.string().min(1).max(128).default("checkpoint"),
  }).prefault({}),
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

/**
 * Lays a policy file over the built-in policy: objects merge key by key at any depth, everything else
 * (arrays such as `models`, strings, numbers, booleans, null) replaces the built-in value whole.
 */
export function overlayBuiltinPolicy(file: Record<string, unknown>): Record<string, unknown> {
  return overlay(BUILTIN_POLICY_SOURCE, file) as Record<string, unknown>;
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value);
}

function overlay(base: unknown, top: unknown): unknown {
  if (!isPlainObject(base) || !isPlainObject(top)) return top;
  const keys = new Set([...Object.keys(base), ...Object.keys(top)]);
  // fromEntries defines own properties, so a "__proto__" key stays data (and the strict schema refuses it).
  return Object.fromEntries(
    [...keys].map((key) => [key, Object.hasOwn(top, key) ? overlay(base[key], top[key]) : base[key]]),
  );
}

/** Which cloud providers have a key configured, as `decide()` sees them. */
export type CloudKeys = ProviderKeys;

/**
 * Why no request at all could be served under `policy` with these keys, or null when some request can:
 * no listed model runs on an allowed provider, cloud models with no classification allowed to leave the
 * host, or cloud models whose providers have no key.
 */
export function policyServingProblem(policy: Policy, keys: CloudKeys): string | null {
  const allowed = policy.defaults.provider_allowlist.filter((p) =>
    policy.models.some((m) => m.provider === p)
  );
  if (allowed.length === 0) {
    return `the policy's models list no model of a provider in defaults.provider_allowlist (${
      policy.defaults.provider_allowlist.join(", ")
    }), so no request can be served; add one to models, or leave models out to keep the built-in list`;
  }
  if (allowed.includes("local")) return null;
  const floor = policy.defaults.classification_floor;
  if (!policy.cloud_classifications.some((c) => stricterClassification(c, floor) === c)) {
    return `the policy's models run only on cloud providers, but cloud_classifications allows no classification at or above the floor ${floor}, so no request can be served; add a local model or widen cloud_classifications`;
  }
  const cloud = allowed as CloudProvider[];
  if (!cloud.some((p) => keys[p])) {
    const vars = cloud.map((p) => CLOUD_KEY_ENV[p]).join(" or ");
    const whose = cloud.length > 1 ? "whose keys are" : "whose key is";
    return `the policy's models run only on ${
      cloud.join(" and ")
    }, ${whose} not set, so no request can be served; set ${vars}, or add a local model`;
  }
  return null;
}

/**
 * Reads the policy from `path` (JSON) laid over the built-in one (see `overlayBuiltinPolicy`), or returns
 * the built-in policy when no path is given. The file must name its `policy_version`, and a policy under
 * which no request could be served whatever keys are set is refused.
 */
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
  if (!isPlainObject(json)) {
    throw new Error(`the policy file ${path} must hold one JSON object; put its sections inside { }`);
  }
  if (!Object.hasOwn(json, "policy_version")) {
    throw new Error(
      `the policy file ${path} has no policy_version; add one (e.g. "ops-2026-11-27"), since every EDR records it`,
    );
  }
  const policy = parsePolicy(overlayBuiltinPolicy(json));
  const problem = policyServingProblem(policy, providerKeys(() => true));
  if (problem) throw new Error(`in the policy file ${path}, ${problem}`);
  return policy;
}

/** The JSON Schema published at schemas/policy/POLICY_v1.json, derived from `policySchema`. */
export function policyJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(policySchema, { io: "input", target: "draft-2020-12" }) as Record<string, unknown>;
}
