import { canonicalJson, type EdrAttempt, type EdrDraft, type EdrRecord, sha256Hex } from "../edr/mod.ts";
import type { EdrAuthority, EdrFailure, EdrSlotOutcome, EdrSlotSnapshot } from "../edr/mod.ts";
import type { Decision, EffectiveContract, RequestFeatures } from "../contract/mod.ts";
import type { HostSnapshot } from "./local_hosts.ts";
import type { HealthSnapshot as HealthView } from "../health/mod.ts";
import type { ChatRequest, Usage } from "../canonical/mod.ts";
import { type ProviderKeys, providerKeys } from "../config/mod.ts";
import type { RouterError } from "./errors.ts";
import {
  type Endpoint,
  type PolicyRef,
  type ProducedOutput,
  recordDraft,
  recordedMessage,
  type RecordFacts,
  type Served,
  servedFirstCandidate,
} from "./record.ts";

export type { Endpoint, ProducedOutput, Served } from "./record.ts";

/** The keys of a request that never reached decide(): none. */
const NO_KEYS: ProviderKeys = Object.freeze(providerKeys(() => false));

/** The EDR writer as the request path sees it. */
export interface EdrSink {
  /** `ok` while commits are accepted; `degraded` while the disk fails (the request is refused first). */
  health(): { state: "ok" | "degraded" };
  commit(
    draft: EdrDraft,
    options?: { capturedInputCanonical?: { text: string; hash: string } },
  ): Promise<EdrRecord>;
}

/**
 * One request's facts as the pipeline stages learn them, and the one place its EDR is committed. Each
 * group of fields has one writer: admission (admit.ts), the decision (route.ts), the attempts and who
 * served (attempt.ts, which alone creates and changes an attempt's record), the outcome (the relays and
 * `fail`). The record itself is `recordDraft(this)`, made once in `commit()`, which runs at most once:
 * that is how "exactly one EDR per request" holds on every path, including the last-resort handler.
 */
export class Exchange implements RecordFacts {
  readonly requestId: string;
  readonly receivedAtMs: number;
  readonly startedAt: number;
  readonly endpoint: Endpoint;
  /** Where the request is (the failure's stage when it ends here). */
  stage: EdrFailure["stage"] = "parse";

  // Admission (admit.ts).
  stream = false;
  chat: ChatRequest | null = null;
  input: { text: string; hash: string } | null = null;
  contract: EffectiveContract | null = null;
  capture = false;
  authority: EdrAuthority | null = null;

  // The decision and what it read (route.ts).
  features: RequestFeatures | null = null;
  /** The health gate's snapshot (the gate hands out read-only arrays; the EDR only reads them). */
  health: HealthView | null = null;
  slotSnapshot: EdrSlotSnapshot | null = null;
  hosts: HostSnapshot[] | null = null;
  /** Which cloud providers have a key; the pipeline's one object for the router's life (never mutated). */
  keys: ProviderKeys = NO_KEYS;
  decision: Decision | null = null;
  decideMs: number | null = null;

  // The attempts (attempt.ts).
  readonly attempts: EdrAttempt[] = [];
  slotOutcome: EdrSlotOutcome | null = null;
  served: Served | null = null;

  // The outcome (relay_json.ts, relay_stream.ts, fail()).
  output: ProducedOutput | null = null;
  usage: Usage | null = null;
  firstByteMs: number | null = null;
  failure: EdrFailure | null = null;

  #committed: Promise<EdrRecord> | null = null;
  #draftMade: EdrDraft | null = null;
  /** Counted in the pipeline's `InFlight` until its record is handed to the writer. */
  inFlight = false;
  /** Set once the request's log line and spans were made (see RequestObserver). */
  observed = false;
  /** Set when the writer refused or failed this request's record (before the request path hears of it). */
  recordLost = false;

  constructor(endpoint: Endpoint, now: number) {
    this.requestId = newRequestId();
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
    this.input = { text, hash: sha256Hex(text) };
    this.chat = chat;
  }

  /** True when the first candidate served (with several local hosts, on the host it named). */
  servedFirstCandidate(): boolean {
    return servedFirstCandidate(this);
  }

  /** Records a client-visible failure (only the first one counts). */
  fail(error: RouterError): void {
    // Members in RFC 8785 order (see recordDraft).
    this.failure ??= {
      code: error.code,
      message: recordedMessage(error.recordedMessage),
      stage: error.stage,
      type: error.failureType,
    };
  }

  /** Builds the draft and commits it once; later calls return the same promise. */
  commit(sink: EdrSink, policy: PolicyRef): Promise<EdrRecord> {
    if (!this.#committed) {
      const { draft, capturedInputCanonical } = recordDraft(
        this,
        policy,
        round(performance.now() - this.startedAt),
      );
      this.#draftMade = draft;
      this.#committed = sink.commit(draft, capturedInputCanonical ? { capturedInputCanonical } : undefined);
      // Registered first, so it runs before the request path's own handling of the failure.
      this.#committed.catch(() => this.recordLost = true);
    }
    return this.#committed;
  }
}

/** A fresh request id (`req_` and 32 hex digits): an inference request's, or any other answer's. */
export function newRequestId(): string {
  return `req_${crypto.randomUUID().replaceAll("-", "")}`;
}

/**
 * When each attempt started (`performance.now()`), for the attempt spans; kept beside the attempt, not
 * in it, because the attempt object itself goes into the record.
 */
export const attemptStartedAt: WeakMap<EdrAttempt, number> = new WeakMap();

/** A heavy request's slot outcome for the record, members in RFC 8785 order. */
export function heavySlotOutcome(
  outcome: EdrSlotOutcome["outcome"],
  queueDepthAtEntry: number,
  waitedMs: number,
): EdrSlotOutcome {
  return { heavy: true, outcome, queue_depth_at_entry: queueDepthAtEntry, waited_ms: waitedMs };
}

/** Rounds a duration to microseconds so records stay short. */
export function round(ms: number): number {
  return Math.round(ms * 1000) / 1000;
}
