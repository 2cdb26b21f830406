import { textHash } from "../client_text.ts";
import {
  canonicalJson,
  EDR_VERSION,
  type EdrAttempt,
  type EdrAuthority,
  type EdrDraft,
  type EdrFailure,
  type EdrHealthSnapshot,
  type EdrLocalHost,
  type EdrRecord,
  type EdrSamplingOptions,
  type EdrSlotOutcome,
  type EdrSlotSnapshot,
  hashCanonical,
  inputPointerOf,
  outputHashOf,
  sha256Hex,
} from "../edr/mod.ts";
import type { Decision, EffectiveContract, RequestFeatures } from "../contract/mod.ts";
import type { HostSnapshot } from "./local_hosts.ts";
import type { HealthSnapshot as HealthView } from "../health/mod.ts";
import type { ChatRequest, FinishReason, ToolCall, Usage, WireProtocol } from "../canonical/mod.ts";
import type { ProviderName } from "../providers/mod.ts";
import { ROUTER_VERSION } from "../version.ts";
import { type ProviderKeys, providerKeys } from "../config/mod.ts";

/** The keys of a request that never reached decide(): none. */
const NO_KEYS: ProviderKeys = Object.freeze(providerKeys(() => false));
import type { RouterError } from "./errors.ts";

/** The EDR writer as the request path sees it. */
export interface EdrSink {
  /** `ok` while commits are accepted; `degraded` while the disk fails (the request is refused first). */
  health(): { state: "ok" | "degraded" };
  commit(
    draft: EdrDraft,
    options?: { capturedInputCanonical?: { text: string; hash: string } },
  ): Promise<EdrRecord>;
}

/** Which inbound API a request arrived on. */
export type Endpoint = "/v1/chat/completions" | "/v1/messages";

/** What the model produced, assembled from a complete answer or a stream. */
export interface ProducedOutput {
  content: string | null;
  tool_calls: ToolCall[];
  finish_reason: FinishReason;
}

/**
 * Everything one request accumulates on its way through the router, and the one place its EDR is
 * built and committed. `commit()` runs at most once, which is how "exactly one EDR per request" holds
 * on every path, including the last-resort handler.
 */
export class Exchange {
  readonly requestId: string;
  readonly receivedAtMs: number;
  readonly startedAt: number;
  readonly endpoint: Endpoint;
  stream = false;
  stage: EdrFailure["stage"] = "parse";
  contract: EffectiveContract | null = null;
  chat: ChatRequest | null = null;
  capture = false;
  features: RequestFeatures | null = null;
  /** The health gate's snapshot (the gate hands out read-only arrays; the EDR only reads them). */
  health: HealthView | null = null;
  slotSnapshot: EdrSlotSnapshot | null = null;
  /** With several local hosts: every host's snapshots as decide() read them (null with one host). */
  hosts: HostSnapshot[] | null = null;
  authority: EdrAuthority | null = null;
  /** Which cloud providers have a key; the handler's one object for the router's life (never mutated). */
  keys: ProviderKeys = NO_KEYS;
  decision: Decision | null = null;
  decideMs: number | null = null;
  attempts: EdrAttempt[] = [];
  slotOutcome: EdrSlotOutcome | null = null;
  served: { provider: ProviderName; model: string; protocol: WireProtocol; local_host?: string } | null =
    null;
  /** With several local hosts: the Ollama version of the host that served (the first host's otherwise). */
  servedOllamaVersion: string | null | undefined = undefined;
  output: ProducedOutput | null = null;
  usage: Usage | null = null;
  firstByteMs: number | null = null;
  failure: EdrFailure | null = null;
  modelDigest: string | null = null;
  /** The `num_ctx` the local model was called with (recorded when the local model served, for replay). */
  numCtx: number | null = null;
  /** The request's RFC 8785 text and its SHA-256, made once at admission (see `admit`). */
  #input: { text: string; hash: string } | null = null;
  #committed: Promise<EdrRecord> | null = null;
  #draftMade: EdrDraft | null = null;
  /** Set once the request's log line and spans were made (see RequestObserver). */
  observed = false;
  /** Set when the writer refused or failed this request's record (before the request path hears of it). */
  recordLost = false;

  constructor(endpoint: Endpoint, now: number) {
    this.requestId = `req_${crypto.randomUUID().replaceAll("-", "")}`;
    this.receivedAtMs = now;
    this.startedAt = performance.now();
    this.endpoint = endpoint;
  }

  /** True once the EDR was handed to the writer. */
  get committed(): boolean {
    return this.#committed !== null;
  }

  /** The record as handed to the writer (null before `commit()`): what the log line and spans read. */
  get draft(): EdrDraft | null {
    return this.#draftMade;
  }

  /** The writer's answer to `commit()`: the sealed record, or the write's failure (null before). */
  get record(): Promise<EdrRecord> | null {
    return this.#committed;
  }

  /**
   * Takes the parsed request into the exchange. Its canonical form is made here, before any provider is
   * called, so a request the record could not hash is refused instead of answered without a record;
   * throws what the canonicalizer throws.
   */
  admit(chat: ChatRequest): void {
    const text = canonicalJson(chat);
    this.#input = { text, hash: sha256Hex(text) };
    this.chat = chat;
  }

  /** True when the first candidate served (with several local hosts, on the host it named). */
  servedFirstCandidate(): boolean {
    const first = this.decision?.candidates[0];
    return this.served !== null && this.served.provider === first?.provider &&
      this.served.local_host === first.local_host;
  }

  /** Records a client-visible failure (only the first one counts). */
  fail(error: RouterError): void {
    // Members in RFC 8785 order (see #draft).
    this.failure ??= {
      code: error.code,
      message: recordedMessage(error.recordedMessage),
      stage: error.stage,
      type: error.failureType,
    };
  }

  /** Builds the draft and commits it once; later calls return the same promise. */
  commit(sink: EdrSink, policy: { version: string; hash: string }): Promise<EdrRecord> {
    if (!this.#committed) {
      const { draft, capturedInputCanonical } = this.#draft(policy);
      this.#draftMade = draft;
      this.#committed = sink.commit(draft, capturedInputCanonical ? { capturedInputCanonical } : undefined);
      // Registered first, so it runs before the request path's own handling of the failure.
      this.#committed.catch(() => this.recordLost = true);
    }
    return this.#committed;
  }

  #draft(
    policy: { version: string; hash: string },
  ): { draft: EdrDraft; capturedInputCanonical?: { text: string; hash: string } } {
    const chat = this.chat;
    // The request was canonicalized once, at admission: its hash goes in the record, its text to the input store.
    const inputText = this.#input?.text ?? null;
    const inputHash = this.#input?.hash ?? null;
    const captured = chat !== null && this.capture;
    const rejected = this.decision?.rejection != null ||
      (this.failure !== null && this.attempts.length === 0);
    const path: EdrDraft["decision"]["path"] = this.served && !this.failure
      ? (this.servedFirstCandidate() ? "primary" : "fallback")
      : rejected
      ? "rejected"
      : "failed";
    // Every nested object is built with its members in RFC 8785 order, so sealing the record takes
    // the native JSON.stringify path instead of sorting each object again (see lib/edr/canonical.ts).
    const served = this.served;
    const draft: EdrDraft = {
      edr_version: EDR_VERSION,
      timestamp: new Date(this.receivedAtMs).toISOString(),
      request_id: this.requestId,
      endpoint: this.endpoint,
      stream: this.stream,
      contract_hash: this.contract ? contractHash(this.contract) : null,
      policy_version: policy.version,
      policy_hash: policy.hash,
      effective_contract: this.contract ? orderedContract(this.contract) : null,
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
      decision_factors: this.decision?.factors ?? [],
      constraints_applied: this.decision?.constraints ?? [],
      candidates: this.decision?.candidates.map(orderedCopy) ?? [],
      decision_inputs: this.hosts === null
        ? {
          authority: this.authority ? orderedCopy(this.authority) : null,
          features: this.features ? recordedFeatures(this.features, this.decision) : null,
          health: this.health ? edrHealth(this.health) : null,
          keys: this.keys,
          slot: this.slotSnapshot ? orderedCopy(this.slotSnapshot) : null,
        }
        : {
          authority: this.authority ? orderedCopy(this.authority) : null,
          features: this.features ? recordedFeatures(this.features, this.decision) : null,
          health: this.health ? edrHealth(this.health) : null,
          hosts: this.hosts.map(edrLocalHost),
          keys: this.keys,
          slot: this.slotSnapshot ? orderedCopy(this.slotSnapshot) : null,
        },
      attempts: this.attempts.map(orderedCopy),
      slot: this.slotOutcome ? orderedCopy(this.slotOutcome) : null,
      input_hash: inputHash,
      output_hash: this.output ? outputHashOf(this.output) : null,
      usage: this.usage ? orderedCopy(this.usage) : null,
      timings: {
        decide_ms: this.decideMs,
        first_byte_ms: this.firstByteMs,
        total_ms: round(performance.now() - this.startedAt),
      },
      environment: {
        model_digest: this.modelDigest,
        ollama_version: this.servedOllamaVersion !== undefined
          ? this.servedOllamaVersion
          : this.health?.ollama_version ?? null,
        options: chat ? samplingOptions(chat, this.served?.provider === "local" ? this.numCtx : null) : {},
        router_version: ROUTER_VERSION,
        seed: chat?.seed ?? null,
      },
      failure: this.failure ? orderedCopy(this.failure) : null,
      side_effects: "none",
      replay: {
        replayable: captured,
        required_inputs_pointer: captured ? inputPointerOf(inputHash!) : null,
      },
    };
    return captured ? { draft, capturedInputCanonical: { text: inputText!, hash: inputHash! } } : { draft };
  }
}

/**
 * When each attempt started (`performance.now()`), for the attempt spans; kept beside the attempt, not
 * in it, because the attempt object itself goes into the record.
 */
export const attemptStartedAt: WeakMap<EdrAttempt, number> = new WeakMap();

/** Rounds a duration to microseconds so records stay short. */
export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}

function samplingOptions(chat: ChatRequest, numCtx: number | null): EdrSamplingOptions {
  // Members in RFC 8785 order (see #draft).
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
function recordedMessage(message: string): string {
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
