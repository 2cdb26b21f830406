import { textHash } from "../client_text.ts";
import type { Policy } from "./policy.ts";
import { type EffectiveContract, type RoutingContract, stricterClassification } from "./routing_contract.ts";

/**
 * Combines the request's contract with the server policy. The result is never looser than the policy:
 * the classification cannot drop below the policy floor, the allowlist is an intersection, the cost cap
 * is the smaller one, and authority can be required by either side but waived by neither.
 */
export function effectiveContract(request: RoutingContract | undefined, policy: Policy): EffectiveContract {
  if (request === undefined) {
    // Most requests carry no contract: they all share one frozen default per policy.
    let shared = defaultContracts.get(policy);
    if (!shared) {
      shared = deepFreeze(combine({}, policy));
      defaultContracts.set(policy, shared);
    }
    return shared;
  }
  return combine(request, policy);
}

const defaultContracts = new WeakMap<Policy, EffectiveContract>();

function deepFreeze(contract: EffectiveContract): EffectiveContract {
  Object.freeze(contract.requires);
  Object.freeze(contract.provider_allowlist);
  Object.freeze(contract.model_preferences);
  return Object.freeze(contract);
}

function combine(request: RoutingContract, policy: Policy): EffectiveContract {
  const defaults = policy.defaults;
  const asked = request;
  const classification = stricterClassification(
    asked.classification ?? defaults.classification,
    defaults.classification_floor,
  );
  const policyAllow = defaults.provider_allowlist;
  const allowlist = asked.provider_allowlist
    ? dedupe(asked.provider_allowlist).filter((p) => policyAllow.includes(p))
    : [...policyAllow];
  const caps = [asked.max_cost_usd, policy.limits.max_cost_usd ?? undefined].filter(
    (v): v is number => typeof v === "number",
  );
  // Members in RFC 8785 order, so the contract hashes and records on the native path (see canonicalJson).
  return {
    authority_required: policy.authority.required || asked.authority_required === true,
    classification,
    latency: asked.latency ?? defaults.latency,
    max_cost_usd: caps.length ? Math.min(...caps) : null,
    model_preferences: asked.model_preferences ? recordablePreferences(asked.model_preferences, policy) : [],
    provider_allowlist: allowlist,
    requires: dedupe(asked.requires ?? []),
  };
}

const policyModelNames = new WeakMap<Policy, Set<string>>();

/**
 * The preferences as the contract keeps them: a policy model's name as it is, any other entry as
 * `sha256:<hex>` of its text. decide() reads preferences only by policy model name, so the others cannot
 * change a decision, and the record (which holds the effective contract) keeps no client-chosen text.
 */
function recordablePreferences(preferences: readonly string[], policy: Policy): string[] {
  let known = policyModelNames.get(policy);
  if (!known) {
    known = new Set(policy.models.map((m) => m.name));
    policyModelNames.set(policy, known);
  }
  return preferences.map((name) => known.has(name) ? name : textHash(name));
}

function dedupe<T>(items: readonly T[]): T[] {
  return [...new Set(items)];
}
