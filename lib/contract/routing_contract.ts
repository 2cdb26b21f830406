import { z } from "zod";
import { type ProviderName, PROVIDERS } from "../config/mod.ts";

/** Data classification: SENSITIVE and SECRET never leave the local host. */
export const classificationSchema = z.enum(["PUBLIC", "INTERNAL", "SENSITIVE", "SECRET"]);
/** A data classification level. */
export type Classification = z.infer<typeof classificationSchema>;

/** The providers a contract may allow, in the order it prefers them. */
export const providerNameSchema = z.enum(PROVIDERS);

/** Capabilities a request may require of the model that serves it. */
export const capabilitySchema = z.enum(["tool_calls", "long_context", "json_mode", "vision"]);
/** A model capability. */
export type Capability = z.infer<typeof capabilitySchema>;

/** Most `model_preferences` entries a contract may list. */
export const MAX_MODEL_PREFERENCES = 16;
/** Longest `model_preferences` entry (characters). */
export const MAX_MODEL_PREFERENCE_CHARS = 256;

/** The request's routing contract (body field `routing_contract` or header `x-routing-contract`). */
export const routingContractSchema = z.strictObject({
  classification: classificationSchema.optional(),
  latency: z.enum(["interactive", "batch"]).optional(),
  max_cost_usd: z.number().nonnegative().optional(),
  requires: z.array(capabilitySchema).optional(),
  provider_allowlist: z.array(providerNameSchema).min(1).optional(),
  model_preferences: z.array(
    z.string().min(1).max(MAX_MODEL_PREFERENCE_CHARS, `at most ${MAX_MODEL_PREFERENCE_CHARS} characters`),
  ).max(MAX_MODEL_PREFERENCES, `at most ${MAX_MODEL_PREFERENCES} entries`).optional(),
  authority_required: z.boolean().optional(),
});
/** A routing contract as the client sent it. */
export type RoutingContract = z.infer<typeof routingContractSchema>;

/** The contract after the server policy was applied: every field present, never looser than the policy. */
export interface EffectiveContract {
  classification: Classification;
  latency: "interactive" | "batch";
  max_cost_usd: number | null;
  requires: Capability[];
  provider_allowlist: ProviderName[];
  model_preferences: string[];
  authority_required: boolean;
}

const classificationRank: Record<Classification, number> = {
  PUBLIC: 0,
  INTERNAL: 1,
  SENSITIVE: 2,
  SECRET: 3,
};

/** Returns the stricter of two classifications. */
export function stricterClassification(a: Classification, b: Classification): Classification {
  return classificationRank[a] >= classificationRank[b] ? a : b;
}
