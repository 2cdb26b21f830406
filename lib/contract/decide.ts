import type { ModelPolicy, Policy } from "./policy.ts";
import type { ProviderName } from "../config/mod.ts";
import {
  type Candidate,
  type Decision,
  type DecisionInput,
  FIELD_PROVIDERS,
  type Rejection,
  type RequestFeatures,
  SLOT_DISPOSITION,
  type SlotDisposition,
} from "./decision_types.ts";
import { fitsCapabilities, requiredCapabilities } from "./capabilities.ts";
import { localHostCandidates } from "./local_host_choice.ts";

const modelIndexCache = new WeakMap<Policy, Map<string, ModelPolicy>>();

function modelIndex(policy: Policy): Map<string, ModelPolicy> {
  let index = modelIndexCache.get(policy);
  if (!index) {
    index = new Map(policy.models.map((m) => [m.name, m]));
    modelIndexCache.set(policy, index);
  }
  return index;
}

/**
 * Decides where a request may run. Pure and deterministic: the same input always gives the same
 * decision, which is what lets replay prove that today's build still routes recorded traffic the same way.
 */
export function decide(input: DecisionInput): Decision {
  const { contract, policy, health, slot, features } = input;
  const factors: string[] = [
    `CLASSIFICATION_${contract.classification}`,
    `LATENCY_${contract.latency.toUpperCase()}`,
  ];
  const constraints: string[] = [`allowlist:${contract.provider_allowlist.join(",")}`];
  if (contract.max_cost_usd !== null) constraints.push(`max_cost_usd:${contract.max_cost_usd}`);
  const needs = requiredCapabilities(input);
  if (needs.length) constraints.push(`requires:${needs.join(",")}`);

  const cloudAllowed = policy.cloud_classifications.includes(contract.classification);
  if (!cloudAllowed) factors.push("CLOUD_BLOCKED_BY_CLASSIFICATION");

  const models = modelIndex(policy);
  const requested = features.requested_model && features.requested_model !== "auto"
    ? features.requested_model
    : null;
  let pinned: ModelPolicy | null = null;
  let slotDisposition: SlotDisposition = SLOT_DISPOSITION.free;
  // A refusal records the factors, constraints, pin and slot disposition reached when it is made.
  const refuse = (status: number, code: string, message: string, param?: string): Decision =>
    reject(factors, constraints, pinned !== null, slotDisposition, status, code, message, param);
  if (requested) {
    const known = models.get(requested);
    const installed = input.hosts === undefined
      ? health.installed.find((m) => m.name === requested)
      : input.hosts.some((h) => h.health.installed.some((m) => m.name === requested));
    if (known) {
      pinned = known;
      factors.push("MODEL_PINNED");
    } else if (installed) {
      pinned = {
        name: requested,
        provider: "local",
        capabilities: [],
        context_window: policy.limits.unlisted_local_context_window,
        price_per_mtok: { input: 0, output: 0 },
        heavy: false,
      };
      factors.push("MODEL_PINNED_LOCAL_INSTALLED");
    } else {
      return refuse(
        404,
        "MODEL_NOT_FOUND",
        // The name is not echoed: it is client text that reaches the record.
        'the requested model is not in the policy and not installed on the local Ollama host; use "auto" or a model from GET /v1/models',
      );
    }
    if (!contract.provider_allowlist.includes(pinned.provider)) {
      return refuse(
        400,
        "MODEL_NOT_ALLOWED_BY_CONTRACT",
        `model ${requested} runs on ${pinned.provider}, which the effective provider_allowlist excludes; pick a model of an allowed provider or "auto"`,
      );
    }
    if (pinned.provider !== "local" && !cloudAllowed) {
      return refuse(
        400,
        "MODEL_NOT_ALLOWED_BY_CONTRACT",
        `model ${requested} runs on ${pinned.provider}, but ${contract.classification} data may not leave the local host; pick a local model or "auto"`,
      );
    }
  }

  const fieldRefusal = refuseUnhonouredFields(input, pinned, cloudAllowed, constraints);
  if (fieldRefusal) {
    return refuse(
      400,
      "UNSUPPORTED_FIELD",
      fieldRefusal.message,
      fieldRefusal.param,
    );
  }

  const candidates: Candidate[] = [];
  let localRefusal: Rejection | null = null;
  let localBlocked = false;
  // A busy local slot can be left for the cloud only when no model is pinned and a cloud provider is usable.
  const canSpill = () =>
    !pinned && cloudAllowed && contract.provider_allowlist.some((p) => p !== "local" && input.keys[p]);

  for (const provider of contract.provider_allowlist) {
    if (pinned && pinned.provider !== provider) continue;
    const unhonoured = unhonouredFields(features, provider);
    if (unhonoured.length) {
      constraints.push(`field_unsupported:${provider}:${unhonoured.join(",")}`);
      if (provider === "local") localBlocked = true;
      continue;
    }
    if (provider === "local") {
      const model = pinned ?? localModel(input, models, factors);
      if (!model) {
        localBlocked = true;
        continue;
      }
      if (input.hosts !== undefined) {
        const local = localHostCandidates(
          input,
          input.hosts,
          model,
          pinned,
          needs,
          canSpill(),
          factors,
          constraints,
        );
        slotDisposition = keptOffSlot(slotDisposition, local.slot);
        if (local.refuseBusy) {
          return refuse(
            429,
            "SLOT_BUSY",
            "the heavy local model is busy on every local host; retry after the Retry-After delay",
          );
        }
        localRefusal = local.refusal ?? localRefusal;
        if (local.candidates.length === 0) localBlocked = true;
        candidates.push(...local.candidates);
        continue;
      }
      if (health.state === "unfit") {
        factors.push("LOCAL_UNFIT", ...health.reasons.map((r) => `LOCAL_${r}`));
        localBlocked = true;
        continue;
      }
      factors.push(health.state === "fit" ? "LOCAL_FIT" : "LOCAL_HEALTH_UNKNOWN");
      if (health.installed.length > 0 && !health.installed.some((m) => m.name === model.name)) {
        factors.push("LOCAL_MODEL_NOT_INSTALLED");
        localBlocked = true;
        continue;
      }
      if (!fitsCapabilities(model, needs, features, factors, constraints, pinned === model)) {
        localBlocked = true;
        continue;
      }
      const heavy = model.heavy ||
        (health.installed.find((m) => m.name === model.name)?.parameter_size_b ?? 0) >=
          policy.health.heavy_param_threshold_b;
      if (heavy && (slot.busy || slot.queue_depth > 0)) {
        const queueFull = slot.queue_depth >= slot.max_queue;
        if (slot.when_busy === "refuse") {
          factors.push("SLOT_BUSY_REFUSE");
          slotDisposition = keptOffSlot(slotDisposition, SLOT_DISPOSITION.refuseBusy);
          return refuse(
            429,
            "SLOT_BUSY",
            "the heavy local model is busy; retry after the Retry-After delay",
          );
        }
        if (slot.when_busy === "spill" || queueFull) {
          if (canSpill()) {
            factors.push(queueFull ? "SLOT_QUEUE_FULL_SPILL" : "SLOT_BUSY_SPILL");
            slotDisposition = keptOffSlot(
              slotDisposition,
              queueFull ? SLOT_DISPOSITION.spillQueueFull : SLOT_DISPOSITION.spillBusy,
            );
            localBlocked = true;
            continue;
          }
          if (queueFull) {
            factors.push("SLOT_QUEUE_FULL");
            slotDisposition = keptOffSlot(slotDisposition, SLOT_DISPOSITION.refuseQueueFull);
            localRefusal = {
              cause: "slot",
              status: 429,
              code: "SLOT_QUEUE_FULL",
              message: "the heavy local model's wait queue is full; retry after the Retry-After delay",
            };
            localBlocked = true;
            continue;
          }
        }
        factors.push("SLOT_BUSY_WAIT");
        slotDisposition = keptOffSlot(slotDisposition, SLOT_DISPOSITION.wait);
      }
      candidates.push({ heavy, model: model.name, provider: "local" });
      continue;
    }
    if (!cloudAllowed) continue;
    if (!input.keys[provider]) {
      constraints.push(`no_key:${provider}`);
      continue;
    }
    const model = pinned ?? cloudModel(provider, input, models);
    if (!model) {
      constraints.push(`no_model:${provider}`);
      continue;
    }
    if (!fitsCapabilities(model, needs, features, factors, constraints, false)) continue;
    if (contract.max_cost_usd !== null) {
      const outTokens = features.max_output_tokens ?? policy.defaults.max_tokens;
      const cost = (features.estimated_prompt_tokens * model.price_per_mtok.input +
        outTokens * model.price_per_mtok.output) / 1_000_000;
      if (cost > contract.max_cost_usd) {
        constraints.push(`cost_exceeds:${provider}/${model.name}`);
        continue;
      }
    }
    candidates.push({ heavy: false, model: model.name, provider });
  }

  if (candidates.length === 0) {
    if (localRefusal) {
      return refuse(
        localRefusal.status,
        localRefusal.code,
        localRefusal.message,
      );
    }
    if (!cloudAllowed) {
      return refuse(
        503,
        `LOCAL_UNAVAILABLE_FOR_${contract.classification}`,
        `${contract.classification} requests run only on the local host, which cannot take this request now; retry when GET /readyz reports ready`,
      );
    }
    return refuse(
      503,
      "NO_PROVIDER_AVAILABLE",
      "no provider satisfies the routing contract; check the contract, GET /readyz and the configured API keys",
    );
  }
  if (candidates[0].provider !== "local" && localBlocked) factors.push("FALLBACK_TO_CLOUD");
  // The message-shape rewrites the Anthropic adapter makes when it serves: recorded, never silent.
  if (candidates.some((c) => c.provider === "anthropic")) {
    if (features.has_late_system === true) factors.push("REWRITE_SYSTEM_HOISTED");
    if (features.opens_with_assistant === true) factors.push("REWRITE_FIRST_TURN_USER");
  }
  return {
    candidates,
    factors,
    constraints,
    rejection: null,
    slot: slotDisposition,
    pinned: pinned !== null,
  };
}

function localModel(
  input: DecisionInput,
  models: Map<string, ModelPolicy>,
  factors: string[],
): ModelPolicy | null {
  const { contract, policy } = input;
  const deep = policy.defaults.local_deep_model;
  const router = policy.defaults.local_router_model;
  const preferred = contract.model_preferences.map((n) => models.get(n)).find((m) => m?.provider === "local");
  let name: string;
  if (preferred) {
    name = preferred.name;
    factors.push(name === deep ? "PREFERENCE_DEEP_MODEL" : "PREFERENCE_LOCAL_MODEL");
  } else if (contract.latency === "batch") {
    name = deep;
    factors.push("LATENCY_BATCH_DEEP_MODEL");
  } else {
    name = router;
    factors.push("LATENCY_INTERACTIVE_ROUTER_MODEL");
  }
  const model = models.get(name) ?? null;
  if (!model) factors.push("LOCAL_MODEL_NOT_IN_POLICY");
  return model;
}

function cloudModel(
  provider: ProviderName,
  input: DecisionInput,
  models: Map<string, ModelPolicy>,
): ModelPolicy | null {
  for (const name of input.contract.model_preferences) {
    const m = models.get(name);
    if (m?.provider === provider) return m;
  }
  return input.policy.models.find((m) => m.provider === provider) ?? null;
}

/** The first disposition that kept the request off a busy slot wins (as its factor came first). */
function keptOffSlot(current: SlotDisposition, next: SlotDisposition): SlotDisposition {
  return current.kind === "spill" || current.kind === "refuse" ? current : next;
}

function reject(
  factors: string[],
  constraints: string[],
  pinned: boolean,
  slot: SlotDisposition,
  status: number,
  code: string,
  message: string,
  param?: string,
): Decision {
  factors.push(`REJECTED_${code}`);
  const cause = code === "SLOT_BUSY" || code === "SLOT_QUEUE_FULL" ? "slot" : "policy";
  const rejection: Rejection = param === undefined
    ? { cause, status, code, message }
    : { cause, status, code, message, param };
  return { candidates: [], factors, constraints, rejection, slot, pinned };
}

/** The request's provider-specific fields that `provider` does not honour (sorted, as recorded). */
function unhonouredFields(features: RequestFeatures, provider: ProviderName): string[] {
  const fields = features.provider_fields;
  if (!fields || fields.length === 0) return [];
  return fields.filter((field) => FIELD_PROVIDERS[field]?.includes(provider) === false);
}

/**
 * A refusal when no provider this request could ever use (allowlist, pinned model, classification, keys:
 * nothing a retry changes) honours its provider-specific fields; null otherwise. Health and the slot are
 * left to the candidate loop: they change.
 */
function refuseUnhonouredFields(
  input: DecisionInput,
  pinned: ModelPolicy | null,
  cloudAllowed: boolean,
  constraints: string[],
): { param: string; message: string } | null {
  const fields = input.features.provider_fields;
  if (!fields || fields.length === 0) return null;
  const usable = input.contract.provider_allowlist.filter((p) =>
    (!pinned || pinned.provider === p) && (p === "local" || (cloudAllowed && input.keys[p]))
  );
  if (usable.some((p) => unhonouredFields(input.features, p).length === 0)) return null;
  const field = usable.length > 0 ? unhonouredFields(input.features, usable[0])[0] : fields[0];
  for (const p of usable) {
    constraints.push(`field_unsupported:${p}:${unhonouredFields(input.features, p).join(",")}`);
  }
  const honouring = FIELD_PROVIDERS[field] ?? [];
  const names = honouring.join(" or ");
  let why: string;
  if (pinned) why = `the requested model runs on ${pinned.provider}`;
  else if (!cloudAllowed && honouring.every((p) => p !== "local")) {
    why = `${input.contract.classification} requests may not leave the local host`;
  } else if (honouring.every((p) => !input.contract.provider_allowlist.includes(p))) {
    why = "the effective provider_allowlist excludes it";
  } else why = "it has no API key configured here";
  return {
    param: field,
    message:
      `${field} is honoured only by ${names}, and ${why}; remove ${field} or route the request to ${names}`,
  };
}
