/** What a request needs of a model's capabilities, and whether a model has them (decide() and host choice). */
import type { ModelPolicy } from "./policy.ts";
import type { Capability } from "./routing_contract.ts";
import type { DecisionInput, RequestFeatures } from "./decision_types.ts";

/** Capabilities the request needs: the contract's `requires` plus what its content implies. */
export function requiredCapabilities(input: DecisionInput): Capability[] {
  const needs = new Set<Capability>(input.contract.requires);
  const f = input.features;
  if (f.has_tools) needs.add("tool_calls");
  if (f.has_images) needs.add("vision");
  if (f.json_mode) needs.add("json_mode");
  if (f.estimated_prompt_tokens > input.policy.limits.long_context_tokens) needs.add("long_context");
  return [...needs].sort();
}

/**
 * Whether `model` can take a request with these needs and this prompt size; says why not in `constraints`
 * (an unlisted pinned model with no known capabilities is let through, noted in `factors`).
 */
export function fitsCapabilities(
  model: ModelPolicy,
  needs: Capability[],
  features: RequestFeatures,
  factors: string[],
  constraints: string[],
  unlistedPin: boolean,
): boolean {
  if (unlistedPin && model.capabilities.length === 0) {
    factors.push("MODEL_CAPABILITIES_UNKNOWN");
    return true;
  }
  const missing = needs.filter((c) => !model.capabilities.includes(c));
  if (missing.length) {
    constraints.push(`lacks:${model.provider}/${model.name}:${missing.join(",")}`);
    return false;
  }
  if (features.estimated_prompt_tokens > model.context_window) {
    constraints.push(`context_exceeds:${model.provider}/${model.name}`);
    return false;
  }
  return true;
}
