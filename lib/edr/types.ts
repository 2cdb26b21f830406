/**
 * TypeScript shapes of an EDR_v1.0.0 record. The published contract is
 * `schemas/edr/EDR_v1.0.0.json`; these types mirror it field for field (a test validates a typed sample).
 */
import type { RequestFeatures } from "../contract/mod.ts";
import type { ProviderKeys, ProviderName } from "../config/mod.ts";

/** The EDR layout version written by this build. */
export const EDR_VERSION = "1.0.0" as const;

/** Data classification of a request, from the routing contract. */
export type EdrClassification = "PUBLIC" | "INTERNAL" | "SENSITIVE" | "SECRET";

/** A provider named in a decision, candidate, attempt or allowlist. */
export type EdrProvider = ProviderName;

/** Wire protocol that served (or would have served) the request. */
export type EdrProtocol = "ollama_chat" | "openai_chat" | "anthropic_messages";

/** Capability a contract may require. */
export type EdrRequirement = "tool_calls" | "long_context" | "json_mode" | "vision";

/** The effective routing contract: the request's contract combined with the server policy. */
export interface EdrEffectiveContract {
  classification: EdrClassification;
  latency: "interactive" | "batch";
  max_cost_usd: number | null;
  requires: EdrRequirement[];
  provider_allowlist: EdrProvider[];
  model_preferences: string[];
  authority_required: boolean;
}

/** How the request was (or was not) served. */
export interface EdrDecision {
  provider: EdrProvider | null;
  model: string | null;
  protocol: EdrProtocol | null;
  path: "primary" | "fallback" | "rejected" | "failed";
  /** With several local hosts: the base URL of the host that served (absent with one host or cloud). */
  local_host?: string;
}

/** One candidate in the order `decide()` produced. */
export interface EdrCandidate {
  provider: EdrProvider;
  model: string;
  heavy: boolean;
  /** With several local hosts: which host a local candidate runs on (absent with one host). */
  local_host?: string;
}

/** A model installed on the local Ollama host, as the health gate saw it. */
export interface EdrInstalledModel {
  name: string;
  digest: string;
  parameter_size_b: number | null;
}

/** The local health gate's snapshot that `decide()` read. */
export interface EdrHealthSnapshot {
  state: "fit" | "unfit" | "unknown";
  reasons: string[];
  age_ms: number;
  circuit: "closed" | "open" | "half_open";
  ollama_version: string | null;
  memory_used_pct: number | null;
  swap_used_mb: number | null;
  installed: EdrInstalledModel[];
}

/** The heavy slot's snapshot that `decide()` read. */
export interface EdrSlotSnapshot {
  busy: boolean;
  queue_depth: number;
  max_queue: number;
  when_busy: "wait" | "spill" | "refuse";
}

/** Request features `decide()` read: the record keeps exactly what the decision was given. */
export type EdrFeatures = RequestFeatures;

/** The verified authority attached to the request (never the lease id itself). */
export interface EdrAuthority {
  issued_by: string;
  scopes: string[];
  lease_id_sha256: string;
  signed: boolean;
  ttl: number;
}

/** Exactly what `decide()` read, policy aside; null parts were not reached before the request failed. */
export interface EdrDecisionInputs {
  health: EdrHealthSnapshot | null;
  slot: EdrSlotSnapshot | null;
  features: EdrFeatures | null;
  keys: ProviderKeys;
  authority: EdrAuthority | null;
  /**
   * With several local hosts: each host's health and slot snapshots, in configured order (absent with
   * one host). `health` and `slot` above are then the first host's.
   */
  hosts?: EdrLocalHost[];
}

/** One local host's snapshots as `decide()` read them. */
export interface EdrLocalHost {
  /** Its base URL as normalized from `OLLAMA_HOST` (`http://gpu1.lan:11434`). */
  host: string;
  health: EdrHealthSnapshot;
  slot: EdrSlotSnapshot;
}

/** One call to a provider. */
export interface EdrAttempt {
  provider: EdrProvider;
  model: string;
  status: number | null;
  duration_ms: number;
  error_code: string | null;
  outcome: "ok" | "fallback" | "failed" | "aborted";
  /** With several local hosts: which host a local attempt called (absent with one host or cloud). */
  local_host?: string;
}

/** What happened at the heavy local slot. */
export interface EdrSlotOutcome {
  heavy: boolean;
  outcome: "acquired" | "waited" | "spilled" | "refused" | "timeout";
  waited_ms: number;
  queue_depth_at_entry: number;
}

/** Token counts of the answer. */
export interface EdrUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

/** Durations measured on the request path. */
export interface EdrTimings {
  decide_ms: number | null;
  first_byte_ms: number | null;
  total_ms: number;
}

/** Sampling options sent upstream (the union of the three wire protocols' names). */
export interface EdrSamplingOptions {
  temperature?: number;
  top_p?: number;
  top_k?: number;
  min_p?: number;
  typical_p?: number;
  seed?: number;
  num_predict?: number;
  num_ctx?: number;
  num_keep?: number;
  max_tokens?: number;
  stop?: string | string[];
  presence_penalty?: number;
  frequency_penalty?: number;
  repeat_penalty?: number;
  repeat_last_n?: number;
  mirostat?: number;
  mirostat_eta?: number;
  mirostat_tau?: number;
  tfs_z?: number;
}

/** Build, host and sampling facts needed to reproduce the answer. */
export interface EdrEnvironment {
  router_version: string;
  ollama_version: string | null;
  model_digest: string | null;
  seed: number | null;
  options: EdrSamplingOptions;
}

/** Failure type recorded in `failure.type`. */
export type EdrFailureType =
  | "validation_error"
  | "authentication_error"
  | "authority_violation"
  | "policy_rejection"
  | "provider_error"
  | "upstream_stream_cut"
  | "client_disconnect"
  | "slot_refused"
  | "uncaught_exception";

/** Request stage recorded in `failure.stage`. */
export type EdrFailureStage =
  | "parse"
  | "authenticate"
  | "authorize"
  | "decide"
  | "execute"
  | "stream"
  | "respond";

/** Why the request failed (no prompt text, no secrets). */
export interface EdrFailure {
  type: EdrFailureType;
  stage: EdrFailureStage;
  message: string;
  /** The reason code the client was given (`error.code`), when there was one. */
  code?: string;
}

/** Whether and how the request can be replayed. */
export interface EdrReplay {
  replayable: boolean;
  required_inputs_pointer: string | null;
}

/** Everything the request path fills in; the writer adds hashes and chain fields. */
export interface EdrDraft {
  edr_version: typeof EDR_VERSION;
  timestamp: string;
  request_id: string;
  endpoint: "/v1/chat/completions" | "/v1/messages";
  stream: boolean;
  contract_hash: string | null;
  policy_version: string;
  policy_hash: string;
  effective_contract: EdrEffectiveContract | null;
  decision: EdrDecision;
  decision_factors: string[];
  constraints_applied: string[];
  candidates: EdrCandidate[];
  decision_inputs: EdrDecisionInputs;
  attempts: EdrAttempt[];
  slot: EdrSlotOutcome | null;
  input_hash: string | null;
  output_hash: string | null;
  usage: EdrUsage | null;
  timings: EdrTimings;
  environment: EdrEnvironment;
  failure: EdrFailure | null;
  side_effects: "none" | "read" | "write" | "external";
  replay: EdrReplay;
}

/** A complete, hashed and chained EDR as written to disk. */
export interface EdrRecord extends EdrDraft {
  sequence: number;
  prev_edr_hash: string | null;
  decision_core_hash: string;
  edr_hash: string;
}
