/**
 * The record of one request, made by a pure function from what happened to it: what admission found, what
 * decide() said, every attempt, the outcome and the timings. The request path calls it once, when the
 * request is committed (lib/pipeline/exchange.ts); tests call it with facts of their own.
 * @module
 */
import { textHash } from "../client_text.ts";
import {
  EDR_VERSION,
  type EdrAttempt,
  type EdrAuthority,
  type EdrDraft,
  type EdrFailure,
  type EdrHealthSnapshot,
  type EdrLocalHost,
  type EdrSamplingOptions,
  type EdrSlotOutcome,
  type EdrSlotSnapshot,
  hashCanonical,
  inputPointerOf,
  outputHashOf,
} from "../edr/mod.ts";
import type { Decision, EffectiveContract, RequestFeatures } from "../contract/mod.ts";
import type { HostSnapshot } from "./local_hosts.ts";
import type { HealthSnapshot as HealthView } from "../health/mod.ts";
import type { ChatRequest, FinishReason, ToolCall, Usage, WireProtocol } from "../canonical/mod.ts";
import type { ProviderName } from "../providers/mod.ts";
import { ROUTER_VERSION } from "../version.ts";
import type { ProviderKeys } from "../config/mod.ts";

/** Which inbound API a request arrived on. */
export type Endpoint = "/v1/chat/completions" | "/v1/messages";

/** What the model produced, assembled from a complete answer or a stream. */
export interface ProducedOutput {
  content: string | null;
  tool_calls: ToolCall[];
  finish_reason: FinishReason;
}

/** Who answered: the candidate whose call succeeded, and what the record keeps of its environment. */
export interface Served {
  provider: ProviderName;
  model: string;
  protocol: WireProtocol;
  /** With several local hosts: the host that served. */
  local_host?: string;
  /** The local model's digest as the health probe last saw it (null when the cloud served). */
  modelDigest: string | null;
  /** The `num_ctx` the local model was called with, for replay (null when the cloud served). */
  numCtx: number | null;
  /** With several local hosts: the Ollama version of the host that served (the first host's otherwise). */
  ollamaVersion?: string | null;
}

/** The policy a record names. */
export interface PolicyRef {
  version: string;
  hash: string;
}

/**
 * What happened to one request, as the record needs it. Each group is written by one pipeline stage:
 * admission (lib/pipeline/admit.ts), the decision (route.ts), the attempts and who served (attempt.ts),
 * the outcome (relay_json.ts, relay_stream.ts, and the failure wherever the request ended).
 */
export interface RecordFacts {
  readonly requestId: string;
  readonly receivedAtMs: number;
  readonly endpoint: Endpoint;
  // Admission.
  readonly stream: boolean;
  readonly chat: ChatRequest | null;
  /** The request's RFC 8785 text and its SHA-256, made once at admission. */
  readonly input: { text: string; hash: string } | null;
  readonly contract: EffectiveContract | null;
  readonly capture: boolean;
  readonly authority: EdrAuthority | null;
  // The decision and what it read.
  readonly features: RequestFeatures | null;
  readonly health: HealthView | null;
  readonly slotSnapshot: EdrSlotSnapshot | null;
  /** With several local hosts: every host's snapshots as decide() read them (null with one host). */
  readonly hosts: readonly HostSnapshot[] | null;
  readonly keys: ProviderKeys;
  readonly decision: Decision | null;
  readonly decideMs: number | null;
  // The attempts.
  readonly attempts: readonly EdrAttempt[];
  readonly slotOutcome: EdrSlotOutcome | null;
  readonly served: Served | null;
  // The outcome.
  readonly output: ProducedOutput | null;
  readonly usage: Usage | null;
  readonly firstByteMs: number | null;
  readonly failure: EdrFailure | null;
}

/** The draft for the writer, and the canonical input to store beside it when the policy captures it. */
export interface RecordToWrite {
  draft: EdrDraft;
  capturedInputCanonical?: { text: string; hash: string };
}

/** True when the first candidate served (with several local hosts, on the host it named). */
export function servedFirstCandidate(facts: Pick<RecordFacts, "decision" | "served">): boolean {
  const first = facts.decision?.candidates[0];
  return facts.served !== null && facts.served.provider === first?.provider &&
    facts.served.local_host === first.local_host;
}

/**
 * The record's draft. Pure: the same facts, policy and total time always give the same draft. Every
 * nested object is built with its members in RFC 8785 order, so sealing takes the native JSON.stringify
 * path (lib/edr/canonical.ts).
 */
export function recordDraft(facts: RecordFacts, policy: PolicyRef, totalMs: number): RecordToWrite {
  const chat = facts.chat;
  // The request was canonicalized once, at admission: its hash goes in the record, its text to the input store.
  const inputText = facts.input?.text ?? null;
  const inputHash = facts.input?.hash ?? null;
  const captured = chat !== null && facts.capture;
  const rejected = facts.decision?.rejection != null ||
    (facts.failure !== null && facts.attempts.length === 0);
  const path: EdrDraft["decision"]["path"] = facts.served && !facts.failure
    ? (servedFirstCandidate(facts) ? "primary" : "fallback")
    : rejected
    ? "rejected"
    : "failed";
  // Every nested object is built with its members in RFC 8785 order, so sealing the record takes
  // the native JSON.stringify path instead of sorting each object again (see lib/edr/canonical.ts).
  const served = facts.served;
  const draft: EdrDraft = {
    edr_version: EDR_VERSION,
    timestamp: new Date(facts.receivedAtMs).toISOString(),
    request_id: facts.requestId,
    endpoint: facts.endpoint,
    stream: facts.stream,
    contract_hash: facts.contract ? contractHash(facts.contract) : null,
    policy_version: policy.version,
    policy_hash: policy.hash,
    effective_contract: facts.contract ? orderedContract(facts.contract) : null,
    decision: served?.local_host === undefined
      ? {
        model: served?.model ?? null,
        path,
        protocol: served?.protocol ?? null,
        provider: served?.provider ?? null,
      }
      : {
        local_host: served.local_host,
        model: served.model,
        path,
        protocol: served.protocol,
        provider: "local",
      },
    decision_factors: facts.decision?.factors ?? [],
    constraints_applied: facts.decision?.constraints ?? [],
    candidates: facts.decision?.candidates.map(orderedCopy) ?? [],
    decision_inputs: facts.hosts === null
      ? {
        authority: facts.authority ? orderedCopy(facts.authority) : null,
        features: facts.features ? recordedFeatures(facts.features, facts.decision) : null,
        health: facts.health ? edrHealth(facts.health) : null,
        keys: facts.keys,
        slot: facts.slotSnapshot ? orderedCopy(facts.slotSnapshot) : null,
      }
      : {
        authority: facts.authority ? orderedCopy(facts.authority) : null,
        features: facts.features ? recordedFeatures(facts.features, facts.decision) : null,
        health: facts.health ? edrHealth(facts.health) : null,
        hosts: facts.hosts.map(edrLocalHost),
        keys: facts.keys,
        slot: facts.slotSnapshot ? orderedCopy(facts.slotSnapshot) : null,
      },
    attempts: facts.attempts.map(orderedCopy),
    slot: facts.slotOutcome ? orderedCopy(facts.slotOutcome) : null,
    input_hash: inputHash,
    output_hash: facts.output ? outputHashOf(facts.output) : null,
    usage: facts.usage ? orderedCopy(facts.usage) : null,
    timings: {
      decide_ms: facts.decideMs,
      first_byte_ms: facts.firstByteMs,
      total_ms: totalMs,
    },
    environment: {
      model_digest: served?.modelDigest ?? null,
      ollama_version: served?.ollamaVersion !== undefined
        ? served.ollamaVersion
        : facts.health?.ollama_version ?? null,
      options: chat ? samplingOptions(chat, served?.provider === "local" ? served.numCtx : null) : {},
      router_version: ROUTER_VERSION,
      seed: chat?.seed ?? null,
    },
    failure: facts.failure ? orderedCopy(facts.failure) : null,
    side_effects: "none",
    replay: {
      replayable: captured,
      required_inputs_pointer: captured ? inputPointerOf(inputHash!) : null,
    },
  };
  return captured ? { draft, capturedInputCanonical: { text: inputText!, hash: inputHash! } } : { draft };
}

function samplingOptions(chat: ChatRequest, numCtx: number | null): EdrSamplingOptions {
  // Members in RFC 8785 order (see recordDraft).
  const options: EdrSamplingOptions = {};
  if (chat.frequency_penalty !== undefined) options.frequency_penalty = chat.frequency_penalty;
  const maxTokens = chat.max_completion_tokens ?? chat.max_tokens;
  if (maxTokens !== undefined) options.max_tokens = maxTokens;
  // The context Ollama ran with: replay sends it, or a prompt longer than Ollama's default is read cut.
  if (numCtx !== null) options.num_ctx = numCtx;
  if (chat.presence_penalty !== undefined) options.presence_penalty = chat.presence_penalty;
  if (chat.seed !== undefined) options.seed = chat.seed;
  // The record keeps no client-chosen text: a stop string is kept as its hash. Replay takes the strings
  // from the captured input, which holds them only where the policy captures inputs.
  if (chat.stop !== undefined) {
    options.stop = typeof chat.stop === "string" ? textHash(chat.stop) : chat.stop.map(textHash);
  }
  if (chat.temperature !== undefined) options.temperature = chat.temperature;
  if (chat.top_k !== undefined) options.top_k = chat.top_k;
  if (chat.top_p !== undefined) options.top_p = chat.top_p;
  return options;
}

/** The longest `failure.message` the EDR schema allows. */
const MAX_FAILURE_MESSAGE = 1000;

/**
 * The message as the record keeps it: within the schema's limit whatever the message echoes (the client
 * still gets it whole), cut before a split surrogate pair so the record stays canonicalizable.
 */
export function recordedMessage(message: string): string {
  if (message.length <= MAX_FAILURE_MESSAGE) return message;
  let cut = MAX_FAILURE_MESSAGE - 1;
  const last = message.charCodeAt(cut - 1);
  if (last >= 0xd800 && last <= 0xdbff) cut--;
  return `${message.slice(0, cut)}…`;
}

/**
 * The features as the record keeps them. A requested model that decide() did not pin (not in the
 * policy, not installed) is client-chosen text the decision does not need: it is kept as its hash,
 * which decide() finds in neither place either, so replay reaches the same 404.
 */
function recordedFeatures(features: RequestFeatures, decision: Decision | null): RequestFeatures {
  const requested = features.requested_model;
  const pinned = decision?.pinned === true;
  if (requested === null || requested === "auto" || pinned) return orderedCopy(features);
  return orderedCopy({ ...features, requested_model: textHash(requested) });
}

/** The gate shares one installed-models list between its snapshots until the next probe. */
const edrInstalled = oncePerObject(
  (installed: HealthView["installed"]): EdrHealthSnapshot["installed"] => installed.map(orderedCopy),
);

/** The EDR keeps what decide() and replay read of the health snapshot (not the loaded-models list). */
function edrHealth(snapshot: HealthView): EdrHealthSnapshot {
  return {
    age_ms: snapshot.age_ms,
    circuit: snapshot.circuit,
    installed: edrInstalled(snapshot.installed),
    memory_used_pct: snapshot.memory_used_pct,
    ollama_version: snapshot.ollama_version,
    // The gate shares these arrays between snapshots and never mutates them; the record only reads them.
    reasons: snapshot.reasons as string[],
    state: snapshot.state,
    swap_used_mb: snapshot.swap_used_mb,
  };
}

/** One local host's snapshots as the record keeps them (members in RFC 8785 order). */
function edrLocalHost(view: HostSnapshot): EdrLocalHost {
  return { health: edrHealth(view.health), host: view.host, slot: orderedCopy(view.slot) };
}

/**
 * A flat record object with its members in RFC 8785 order, so sealing takes the native JSON.stringify
 * path (see lib/edr/canonical.ts): the object itself when its members already are (the router builds
 * them so; the record is serialized before anything changes them), else a reordered copy.
 */
function orderedCopy<T extends object>(value: T): T {
  let previous: string | null = null;
  for (const key in value) {
    if (previous !== null && !(previous < key)) {
      const out: Record<string, unknown> = {};
      for (const k of Object.keys(value).sort()) out[k] = (value as Record<string, unknown>)[k];
      return out as T;
    }
    previous = key;
  }
  return value;
}

/** `derive`, computed once per input object (inputs are shared and never mutated). */
function oncePerObject<K extends object, V>(derive: (key: K) => V): (key: K) => V {
  const cache = new WeakMap<K, V>();
  return (key) => {
    let value = cache.get(key);
    if (value === undefined) {
      value = derive(key);
      cache.set(key, value);
    }
    return value;
  };
}

// Most requests share the policy's default contract object, so its ordered copy and hash are made once.
const orderedContract = oncePerObject((contract: EffectiveContract) => orderedCopy(contract));
const contractHash = oncePerObject((contract: EffectiveContract) => hashCanonical(contract));
