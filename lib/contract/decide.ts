import type { ModelPolicy, Policy } from "./policy.ts";
import type { Capability, EffectiveContract } from "./routing_contract.ts";

import type { ProviderKeys, ProviderName } from "../config/mod.ts";

/** What decide() reads of the local health snapshot. */
export interface HealthView {
  state: "fit" | "unfit" | "unknown";
  reasons: readonly string[];
  installed: readonly { name: string; digest: string; parameter_size_b: number | null }[];
}

/** What decide() reads of the heavy-slot snapshot. */
export interface SlotView {
  busy: boolean;
  queue_depth: number;
  max_queue: number;
  when_busy: "wait" | "spill" | "refuse";
}

/** One local Ollama host as decide() sees it when there are several. */
export interface LocalHostView {
  /** Its base URL (lib/config/ollama_host.ts), recorded on the candidates that run there. */
  host: string;
  health: HealthView;
  slot: SlotView;
}

/** Facts about the request that routing depends on (recorded in the EDR as `features`). */
export interface RequestFeatures {
  /** The model the client named; null or "auto" lets the contract decide. */
  requested_model: string | null;
  stream: boolean;
  has_tools: boolean;
  has_images: boolean;
  json_mode: boolean;
  estimated_prompt_tokens: number;
  max_output_tokens: number | null;
  /**
   * Request fields that only some providers honour (sorted names, see `FIELD_PROVIDERS`); absent when
   * none is set. decide() keeps only providers that honour them all.
   */
  provider_fields?: string[];
  /**
   * Present (true) when a system or developer message comes after the conversation started. Anthropic takes
   * instructions only before it, so when Anthropic is a candidate decide() records `REWRITE_SYSTEM_HOISTED`.
   */
  has_late_system?: boolean;
  /**
   * Present (true) when the conversation opens with an assistant turn. Anthropic requires a user turn first,
   * so when Anthropic is a candidate decide() records `REWRITE_FIRST_TURN_USER`.
   */
  opens_with_assistant?: boolean;
}

/**
 * Which providers honour each request field that only some of them do. A request that sets one runs only
 * on those providers; one that no usable provider honours is a 400 `UNSUPPORTED_FIELD` naming the field.
 */
export const FIELD_PROVIDERS: Readonly<Record<string, readonly ProviderName[]>> = {
  frequency_penalty: ["local", "openai"],
  logit_bias: ["openai"],
  logprobs: ["openai"],
  metadata: ["openai"],
  prediction: ["openai"],
  presence_penalty: ["local", "openai"],
  prompt_cache_key: ["openai"],
  reasoning_effort: ["local", "openai"],
  safety_identifier: ["local", "openai"],
  seed: ["local", "openai"],
  service_tier: ["openai"],
  store: ["openai"],
  top_k: ["local", "anthropic"],
  temperature: ["local", "openai"],
  top_logprobs: ["openai"],
  top_p: ["local", "openai"],
  verbosity: ["openai"],
};

/** Everything decide() depends on; nothing else (no clock, no I/O, no environment). */
export interface DecisionInput {
  contract: EffectiveContract;
  policy: Policy;
  health: HealthView;
  slot: SlotView;
  features: RequestFeatures;
  /** Which cloud providers have a key configured. */
  keys: ProviderKeys;
  /**
   * With several local hosts: each host's snapshots, in configured order (`health` and `slot` are then
   * the first host's and are not read). Absent with one host: `health` and `slot` are that host's.
   */
  hosts?: readonly LocalHostView[];
}

/** One candidate in the ordered chain the router will try. */
export interface Candidate {
  provider: ProviderName;
  model: string;
  heavy: boolean;
  /** With several local hosts: the host a local candidate runs on (absent with one host). */
  local_host?: string;
}

/**
 * What decide() made of the heavy slot: `free` (no heavy local candidate met a busy slot), `wait` (the first
 * local candidate queues for it), or a busy slot that kept the request off the local host (`spill`: to the
 * next candidate; `refuse`: a 429 unless another candidate serves), with whether the slot was busy or its
 * wait queue full. The EDR's slot outcome is read from it (`spilled`, `refused`).
 */
export type SlotDisposition =
  | { readonly kind: "free" }
  | { readonly kind: "wait" }
  | { readonly kind: "spill"; readonly reason: "busy" | "queue_full" }
  | { readonly kind: "refuse"; readonly reason: "busy" | "queue_full" };

/** The dispositions as shared constants: a decision allocates none. */
export const SLOT_DISPOSITION = Object.freeze(
  {
    free: Object.freeze({ kind: "free" }),
    wait: Object.freeze({ kind: "wait" }),
    spillBusy: Object.freeze({ kind: "spill", reason: "busy" }),
    spillQueueFull: Object.freeze({ kind: "spill", reason: "queue_full" }),
    refuseBusy: Object.freeze({ kind: "refuse", reason: "busy" }),
    refuseQueueFull: Object.freeze({ kind: "refuse", reason: "queue_full" }),
  } as const satisfies Record<string, SlotDisposition>,
);

/** A refusal decided before any provider is tried. */
export interface Rejection {
  /** `slot`: the heavy slot is busy or its queue full (retry later); `policy`: the request or contract. */
  cause: "slot" | "policy";
  status: number;
  code: string;
  message: string;
  /** The request field to blame, when one is (a field no usable provider honours). */
  param?: string;
}

/** The routing decision: an ordered candidate chain and the stable reason codes behind it. */
export interface Decision {
  candidates: Candidate[];
  factors: string[];
  constraints: string[];
  rejection: Rejection | null;
  /** The heavy slot as decide() found it for this request (the factors say the same as reason codes). */
  slot: SlotDisposition;
  /** The requested model is one the policy lists or Ollama has installed (`MODEL_PINNED*`). */
  pinned: boolean;
}

const modelIndexCache = new WeakMap<Policy, Map<string, ModelPolicy>>();

function modelIndex(policy: Policy): Map<string, ModelPolicy> {
  let index = modelIndexCache.get(policy);
  if (!index) {
    index = new Map(policy.models.map((m) => [m.name, m]));
    modelIndexCache.set(policy, index);
  }
  return index;
}

/** Capabilities the request needs: the contract's `requires` plus what its content implies. */
function requiredCapabilities(input: DecisionInput): Capability[] {
  const needs = new Set<Capability>(input.contract.requires);
  const f = input.features;
  if (f.has_tools) needs.add("tool_calls");
  if (f.has_images) needs.add("vision");
  if (f.json_mode) needs.add("json_mode");
  if (f.estimated_prompt_tokens > input.policy.limits.long_context_tokens) needs.add("long_context");
  return [...needs].sort();
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
      return reject(
        factors,
        constraints,
        pinned !== null,
        slotDisposition,
        404,
        "MODEL_NOT_FOUND",
        // The name is not echoed: it is client text that reaches the record.
        'the requested model is not in the policy and not installed on the local Ollama host; use "auto" or a model from GET /v1/models',
      );
    }
    if (!contract.provider_allowlist.includes(pinned.provider)) {
      return reject(
        factors,
        constraints,
        pinned !== null,
        slotDisposition,
        400,
        "MODEL_NOT_ALLOWED_BY_CONTRACT",
        `model ${requested} runs on ${pinned.provider}, which the effective provider_allowlist excludes; pick a model of an allowed provider or "auto"`,
      );
    }
    if (pinned.provider !== "local" && !cloudAllowed) {
      return reject(
        factors,
        constraints,
        pinned !== null,
        slotDisposition,
        400,
        "MODEL_NOT_ALLOWED_BY_CONTRACT",
        `model ${requested} runs on ${pinned.provider}, but ${contract.classification} data may not leave the local host; pick a local model or "auto"`,
      );
    }
  }

  const fieldRefusal = refuseUnhonouredFields(input, pinned, cloudAllowed, constraints);
  if (fieldRefusal) {
    return reject(
      factors,
      constraints,
      pinned !== null,
      slotDisposition,
      400,
      "UNSUPPORTED_FIELD",
      fieldRefusal.message,
      fieldRefusal.param,
    );
  }

  const candidates: Candidate[] = [];
  let localRefusal: Rejection | null = null;
  let localBlocked = false;
  const cloudCandidateCount = () =>
    contract.provider_allowlist.filter((p) => p !== "local" && cloudAllowed && input.keys[p]).length;

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
        const canSpill = cloudCandidateCount() > 0 && !pinned;
        const local = localHostCandidates(
          input,
          input.hosts,
          model,
          pinned,
          needs,
          canSpill,
          factors,
          constraints,
        );
        slotDisposition = keptOffSlot(slotDisposition, local.slot);
        if (local.refuseBusy) {
          return reject(
            factors,
            constraints,
            pinned !== null,
            slotDisposition,
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
        const canSpill = cloudCandidateCount() > 0 && !pinned;
        const queueFull = slot.queue_depth >= slot.max_queue;
        if (slot.when_busy === "refuse") {
          factors.push("SLOT_BUSY_REFUSE");
          slotDisposition = keptOffSlot(slotDisposition, SLOT_DISPOSITION.refuseBusy);
          return reject(
            factors,
            constraints,
            pinned !== null,
            slotDisposition,
            429,
            "SLOT_BUSY",
            "the heavy local model is busy; retry after the Retry-After delay",
          );
        }
        if (slot.when_busy === "spill" || queueFull) {
          if (canSpill) {
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
      return reject(
        factors,
        constraints,
        pinned !== null,
        slotDisposition,
        localRefusal.status,
        localRefusal.code,
        localRefusal.message,
      );
    }
    if (!cloudAllowed) {
      return reject(
        factors,
        constraints,
        pinned !== null,
        slotDisposition,
        503,
        `LOCAL_UNAVAILABLE_FOR_${contract.classification}`,
        `${contract.classification} requests run only on the local host, which cannot take this request now; retry when GET /readyz reports ready`,
      );
    }
    return reject(
      factors,
      constraints,
      pinned !== null,
      slotDisposition,
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

function fitsCapabilities(
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

/** What the local hosts offer a request: candidates in order, or why none can take it. */
interface LocalHostsVerdict {
  candidates: Candidate[];
  /** A 429 to give when nothing else can serve (every fitting host's wait queue is full). */
  refusal: Rejection | null;
  /** `slot.when_busy` is `refuse` and every host that could run the heavy model is busy. */
  refuseBusy: boolean;
  /** What the hosts' heavy slots made of the request. */
  slot: SlotDisposition;
}

/**
 * The local candidates when there are several local hosts, in a fixed order (docs/fleet.md):
 * 1. a host is skipped when it is unfit, or when its last model list lacks the model (a host whose list
 *    is empty has not been probed yet and is not ruled out);
 * 2. the others keep their configured order, except that heavy work goes first to hosts whose heavy slot
 *    is free; hosts whose slot is busy follow, when `slot.when_busy` lets the request wait there (`wait`,
 *    or `spill` with nowhere else to go) and their queue has room.
 * Every candidate after the first is a fallback before any cloud candidate. Each skipped host is named
 * in `constraints` as `local_host_skipped:<host>:<REASON>`; the first candidate's health is the factor.
 */
function localHostCandidates(
  input: DecisionInput,
  hosts: readonly LocalHostView[],
  model: ModelPolicy,
  pinned: ModelPolicy | null,
  needs: Capability[],
  canSpillToCloud: boolean,
  factors: string[],
  constraints: string[],
): LocalHostsVerdict {
  const verdict: LocalHostsVerdict = {
    candidates: [],
    refusal: null,
    refuseBusy: false,
    slot: SLOT_DISPOSITION.free,
  };
  if (!fitsCapabilities(model, needs, input.features, factors, constraints, pinned === model)) return verdict;
  const threshold = input.policy.health.heavy_param_threshold_b;
  const ready: { candidate: Candidate; host: LocalHostView }[] = [];
  const busy: { candidate: Candidate; host: LocalHostView }[] = [];
  let unfit = 0;
  let missing = 0;
  const skip = (host: LocalHostView, reason: string) =>
    constraints.push(`local_host_skipped:${host.host}:${reason}`);
  for (const host of hosts) {
    const { health, slot } = host;
    if (health.state === "unfit") {
      unfit++;
      skip(host, ["LOCAL_UNFIT", ...health.reasons.map((r) => `LOCAL_${r}`)].join("+"));
      continue;
    }
    const entry = health.installed.find((m) => m.name === model.name);
    if (health.installed.length > 0 && entry === undefined) {
      missing++;
      skip(host, "LOCAL_MODEL_NOT_INSTALLED");
      continue;
    }
    const heavy = model.heavy || (entry?.parameter_size_b ?? 0) >= threshold;
    // Members in RFC 8785 order, as the EDR keeps them.
    const candidate: Candidate = { heavy, local_host: host.host, model: model.name, provider: "local" };
    if (heavy && (slot.busy || slot.queue_depth > 0)) busy.push({ candidate, host });
    else ready.push({ candidate, host });
  }
  const chosen = [...ready];
  let refused = false;
  let queueFull = false;
  let spilled = false;
  for (const entry of busy) {
    const slot = entry.host.slot;
    if (slot.when_busy === "refuse") {
      refused = true;
      skip(entry.host, "SLOT_BUSY");
    } else if (slot.queue_depth >= slot.max_queue) {
      queueFull = true;
      skip(entry.host, "SLOT_QUEUE_FULL");
    } else if (slot.when_busy === "spill" && (ready.length > 0 || canSpillToCloud)) {
      spilled = true;
      skip(entry.host, "SLOT_BUSY_SPILL");
    } else {
      chosen.push(entry);
    }
  }
  if (chosen.length === 0) {
    if (unfit === hosts.length) factors.push("LOCAL_UNFIT");
    else if (unfit + missing === hosts.length) factors.push("LOCAL_MODEL_NOT_INSTALLED");
    else if (refused) {
      factors.push("SLOT_BUSY_REFUSE");
      verdict.refuseBusy = true;
      verdict.slot = SLOT_DISPOSITION.refuseBusy;
    } else if (queueFull && canSpillToCloud) {
      factors.push("SLOT_QUEUE_FULL_SPILL");
      verdict.slot = SLOT_DISPOSITION.spillQueueFull;
    } else if (queueFull) {
      factors.push("SLOT_QUEUE_FULL");
      verdict.slot = SLOT_DISPOSITION.refuseQueueFull;
      verdict.refusal = {
        cause: "slot",
        status: 429,
        code: "SLOT_QUEUE_FULL",
        message:
          "the heavy local model's wait queue is full on every local host; retry after the Retry-After delay",
      };
    } else if (spilled) {
      factors.push("SLOT_BUSY_SPILL");
      verdict.slot = SLOT_DISPOSITION.spillBusy;
    }
    return verdict;
  }
  const first = chosen[0];
  factors.push(first.host.health.state === "fit" ? "LOCAL_FIT" : "LOCAL_HEALTH_UNKNOWN");
  if (first.host !== hosts[0]) factors.push("LOCAL_HOST_SKIPPED");
  if (ready.length === 0) {
    factors.push("SLOT_BUSY_WAIT");
    verdict.slot = SLOT_DISPOSITION.wait;
  }
  verdict.candidates = chosen.map((c) => c.candidate);
  return verdict;
}
