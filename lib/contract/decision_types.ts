/**
 * What decide() reads and what it returns: its input views, the candidates, the typed slot disposition and
 * rejection, and which request fields each provider can honour. Types and constants only; the rules are in
 * decide.ts.
 */
import type { Policy } from "./policy.ts";
import type { EffectiveContract } from "./routing_contract.ts";
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
