/**
 * One call to one candidate. The attempt owns what the call holds: the heavy slot's lease, the half-open
 * circuit trial, the one abort controller of its call (aborted by the client leaving, by the adapter's
 * first-byte, idle and total deadlines from lib/providers/deadlines.ts, or by the attempt ending), and its
 * entry in the record.
 * `release()` gives all of them back, once, whichever way the attempt ended.
 * @module
 */
import type { Candidate, Policy } from "../contract/mod.ts";
import type { EdrAttempt } from "../edr/mod.ts";
import type { HealthGate } from "../health/mod.ts";
import type { HostSnapshot, LocalHost } from "./local_hosts.ts";
import { RouterError } from "./errors.ts";
import type { ChatRequest } from "../canonical/mod.ts";
import type { CallOptions, ProviderAdapter } from "../providers/mod.ts";
import { type HostSlot, SlotError, type SlotLease } from "../slot/mod.ts";
import type { Pipeline } from "./context.ts";
import { attemptStartedAt, type Exchange, heavySlotOutcome, round } from "./exchange.ts";
import { clientGone } from "./request_input.ts";

/** Why an attempt's controller was aborted when it simply ended. */
const ATTEMPT_OVER = "the attempt is over";

/** Where a candidate runs: its adapter, its host's health gate and slot, and the host's snapshots. */
export interface Placement {
  adapter: ProviderAdapter;
  health: HealthGate;
  /** With several local hosts: the host a local candidate runs on (null otherwise). */
  host: LocalHost | null;
  view: HostSnapshot | null;
}

export class Attempt implements EventListenerObject, Disposable {
  readonly candidate: Candidate;
  readonly adapter: ProviderAdapter;
  readonly chat: ChatRequest;
  readonly options: CallOptions;
  readonly local: boolean;
  /** The attempt's entry in the record (members in RFC 8785 order); only this class changes it. */
  readonly #record: EdrAttempt;
  readonly #placement: Placement;
  readonly #clientSignal: AbortSignal;
  /** The call's signal: aborted by the client leaving, or by `release()` when the attempt is over. */
  readonly #controller = new AbortController();
  #lease: SlotLease | null;
  #trial: boolean;
  readonly #startedAt: number;
  #streamingSince = 0;
  #released = false;

  /**
   * Takes the candidate's half-open trial and heavy slot when it needs them. Null when this candidate is
   * passed over (the trial is taken, or the slot is busy and another candidate follows); throws the
   * request's refusal when it was the last one.
   */
  static open(
    pipeline: Pipeline,
    exchange: Exchange,
    clientSignal: AbortSignal,
    candidate: Candidate,
    placement: Placement,
    next: Candidate | undefined,
  ): Attempt | null | Promise<Attempt | null> {
    const { health, host, view } = placement;
    const local = candidate.provider === "local";
    let trial = false;
    if (local && (view?.health ?? exchange.health)?.circuit === "half_open") {
      trial = health.tryAcquireHalfOpenTrial();
      if (!trial) {
        const skipped = attemptRecord(candidate, host);
        skipped.error_code = "CIRCUIT_HALF_OPEN_TRIAL_BUSY";
        skipped.outcome = "fallback";
        exchange.attempts.push(skipped);
        return null;
      }
    }
    // Only a heavy local candidate may wait (for the slot); every other attempt opens without an await.
    if (local && candidate.heavy) {
      return Attempt.#openHeavy(pipeline, exchange, clientSignal, candidate, placement, next, trial);
    }
    return new Attempt(pipeline.policy, exchange, clientSignal, candidate, placement, null, trial);
  }

  static async #openHeavy(
    pipeline: Pipeline,
    exchange: Exchange,
    clientSignal: AbortSignal,
    candidate: Candidate,
    placement: Placement,
    next: Candidate | undefined,
    trial: boolean,
  ): Promise<Attempt | null> {
    const { health, host, view } = placement;
    const queueDepth = (view?.slot ?? exchange.slotSnapshot)?.queue_depth ?? 0;
    // decide() read the slot free; a slot shared across replicas may have been taken since. Then spill and
    // refuse act as they would have on a busy slot: spill to the next candidate if there is one (else
    // wait), refuse at once whatever follows.
    const when = pipeline.policy.slot.when_busy;
    let lease: SlotLease;
    try {
      lease = await acquireSlot(
        pipeline,
        clientSignal,
        exchange,
        host?.slot ?? pipeline.deps.slot,
        queueDepth,
        when === "wait" || (when === "spill" && next === undefined),
      );
    } catch (error) {
      if (trial) health.releaseHalfOpenTrial();
      if (!(error instanceof SlotError)) throw error;
      if (error.code === "SLOT_ABORTED") throw clientGone();
      const spill = next !== undefined && when !== "refuse";
      exchange.slotOutcome = heavySlotOutcome(
        spill ? "spilled" : (error.code === "SLOT_WAIT_TIMEOUT" ? "timeout" : "refused"),
        queueDepth,
        exchange.slotOutcome?.waited_ms ?? 0,
      );
      if (spill) {
        pipeline.deps.metrics.countFallback("local", next!.provider, error.code);
        return null;
      }
      throw slotRefusal(error, pipeline.policy);
    }
    return new Attempt(pipeline.policy, exchange, clientSignal, candidate, placement, lease, trial);
  }

  private constructor(
    policy: Policy,
    exchange: Exchange,
    clientSignal: AbortSignal,
    candidate: Candidate,
    placement: Placement,
    lease: SlotLease | null,
    trial: boolean,
  ) {
    const local = candidate.provider === "local";
    this.candidate = candidate;
    this.adapter = placement.adapter;
    this.chat = exchange.chat!;
    this.local = local;
    this.#placement = placement;
    this.#clientSignal = clientSignal;
    this.#lease = lease;
    this.#trial = trial;
    clientSignal.addEventListener("abort", this, { once: true });
    this.options = {
      model: candidate.model,
      signal: this.#controller.signal,
      // The adapter's deadlines abort this same controller: one per call.
      controller: this.#controller,
      firstByteTimeoutMs: policy.limits.first_byte_timeout_ms,
      streamIdleTimeoutMs: policy.limits.stream_idle_timeout_ms,
      totalTimeoutMs: policy.limits.total_timeout_ms,
      defaultMaxTokens: policy.defaults.max_tokens,
      keepAlive: local ? policy.ollama.keep_alive : undefined,
      contextWindow: local ? localContextWindow(policy, candidate.model) : undefined,
    };
    this.#startedAt = performance.now();
    const record = attemptRecord(candidate, placement.host);
    this.#record = record;
    exchange.attempts.push(record);
    attemptStartedAt.set(record, this.#startedAt);
  }

  /** The client went away: the call is aborted with the client's reason. */
  handleEvent(): void {
    this.#controller.abort(this.#clientSignal.reason);
  }

  /** The call answered (a JSON answer whole, a stream its first event): the exchange learns who served. */
  succeeded(exchange: Exchange): void {
    const record = this.#record;
    record.status = 200;
    record.duration_ms = round(performance.now() - this.#startedAt);
    const { health, host, view } = this.#placement;
    const candidate = this.candidate;
    let modelDigest: string | null = null;
    let numCtx: number | null = null;
    if (this.local) {
      health.recordSuccess();
      // The trial is over once the host answered; a long stream must not keep other requests off it.
      this.#releaseTrial();
      modelDigest = health.modelDigest(candidate.model);
      numCtx = this.options.contextWindow ?? null;
    }
    const { model } = candidate;
    const protocol = this.adapter.protocol;
    exchange.served = host === null
      ? { provider: candidate.provider, model, protocol, modelDigest, numCtx }
      : {
        provider: "local",
        model,
        protocol,
        local_host: host.url,
        modelDigest,
        numCtx,
        ollamaVersion: view!.health.ollama_version,
      };
  }

  /** The call ended before answering: its duration. */
  stopped(): void {
    this.#record.duration_ms = round(performance.now() - this.#startedAt);
  }

  /** How the call that ended before answering failed; the caller decides whether to fall back. */
  failed(outcome: "aborted" | "fallback" | "failed", errorCode: string, upstreamStatus: number | null): void {
    const record = this.#record;
    record.outcome = outcome;
    record.error_code = errorCode;
    if (outcome !== "aborted") record.status = upstreamStatus;
  }

  /** The streamed answer started reaching the client; its duration so far ran to the first event. */
  streaming(): void {
    this.#streamingSince = performance.now();
  }

  /** The streamed answer ended (whole, cut, or abandoned): its streaming time joins the duration. */
  streamEnded(): void {
    const record = this.#record;
    record.duration_ms = round(record.duration_ms + performance.now() - this.#streamingSince);
  }

  /** The client left mid-stream. */
  abortedMidStream(): void {
    this.#record.outcome = "aborted";
  }

  /** The upstream failed mid-stream with `code`. */
  failedMidStream(code: string): void {
    this.#record.outcome = "failed";
    this.#record.error_code = code;
  }

  /**
   * Gives back everything the attempt holds: the slot lease, the half-open trial, the client listener, and
   * the call's controller (which releases the adapter's deadlines). Idempotent.
   */
  release(): void {
    if (this.#released) return;
    this.#released = true;
    this.#lease?.release();
    this.#lease = null;
    this.#releaseTrial();
    this.#clientSignal.removeEventListener("abort", this);
    this.#controller.abort(ATTEMPT_OVER);
  }

  [Symbol.dispose](): void {
    this.release();
  }

  #releaseTrial(): void {
    if (!this.#trial) return;
    this.#trial = false;
    this.#placement.health.releaseHalfOpenTrial();
  }
}

/** A candidate's entry in the record, before its call: members in RFC 8785 order, as the EDR keeps them. */
function attemptRecord(candidate: Candidate, host: LocalHost | null): EdrAttempt {
  const record: EdrAttempt = {
    duration_ms: 0,
    error_code: null,
    model: candidate.model,
    outcome: "ok",
    provider: candidate.provider,
    status: null,
  };
  // Only with several hosts; the record then sorts this member into place.
  if (host !== null) record.local_host = host.url;
  return record;
}

/** Takes the heavy slot, waiting in its queue when it is busy; records the slot outcome either way. */
async function acquireSlot(
  pipeline: Pipeline,
  signal: AbortSignal,
  exchange: Exchange,
  slot: HostSlot,
  queueDepthAtDecision: number,
  queue: boolean,
): Promise<SlotLease> {
  const { policy, deps: { metrics } } = pipeline;
  const immediate = slot.tryAcquire();
  if (immediate) {
    exchange.slotOutcome = heavySlotOutcome("acquired", 0, 0);
    return immediate;
  }
  const startWait = performance.now();
  try {
    const lease = await slot.acquire({ signal, maxWaitMs: policy.slot.max_wait_ms, queue });
    // A shared slot has no synchronous tryAcquire: its acquire says whether the holder had to queue.
    if (lease.queued) metrics.observeSlotWait(lease.waitedMs / 1000, "acquired");
    exchange.slotOutcome = heavySlotOutcome(
      lease.queued ? "waited" : "acquired",
      lease.queueDepthAtEntry,
      round(lease.waitedMs),
    );
    return lease;
  } catch (error) {
    const waited = round(performance.now() - startWait);
    if (error instanceof SlotError) {
      const outcome = error.code === "SLOT_WAIT_TIMEOUT"
        ? "timeout"
        : error.code === "SLOT_ABORTED"
        ? "aborted"
        : "queue_full";
      metrics.observeSlotWait(waited / 1000, outcome);
      // A client that left while waiting is a client_disconnect failure, not a slot outcome.
      exchange.slotOutcome = outcome === "aborted"
        ? null
        : heavySlotOutcome(outcome === "timeout" ? "timeout" : "refused", queueDepthAtDecision, waited);
    }
    throw error;
  }
}

/** The answer to a heavy request that did not get the slot and has nowhere to spill. */
function slotRefusal(error: SlotError, policy: Policy): RouterError {
  const options = {
    failureType: "slot_refused" as const,
    stage: "execute" as const,
    retryAfter: policy.slot.retry_after_s,
  };
  switch (error.code) {
    case "SLOT_WAIT_TIMEOUT":
      return new RouterError(
        429,
        error.code,
        "the heavy local model stayed busy past the maximum wait; retry after the Retry-After delay",
        options,
      );
    case "SLOT_UNAVAILABLE":
      return new RouterError(
        503,
        error.code,
        "the heavy local model's shared slot (Redis) could not be reached; retry after the Retry-After delay",
        options,
      );
    default:
      // Under refuse, a slot taken by another replica after decide() is refused as decide() refuses it.
      return policy.slot.when_busy === "refuse"
        ? new RouterError(
          429,
          "SLOT_BUSY",
          "the heavy local model is busy; retry after the Retry-After delay",
          options,
        )
        : new RouterError(
          429,
          error.code,
          "the heavy local model's wait queue is full; retry after the Retry-After delay",
          options,
        );
  }
}

/** The context window Ollama runs a local model with: the policy's, or the default for unlisted models. */
function localContextWindow(policy: Policy, model: string): number {
  const listed = policy.models.find((m) => m.provider === "local" && m.name === model);
  return listed?.context_window ?? policy.limits.unlisted_local_context_window;
}
