import type { SlotPolicy } from "./schema.ts";

/**
 * Why a wait for the heavy slot ended without the slot. SLOT_UNAVAILABLE: a slot shared through Redis
 * could not reach it, so holding it cannot be proven.
 */
export type SlotErrorCode = "SLOT_QUEUE_FULL" | "SLOT_WAIT_TIMEOUT" | "SLOT_ABORTED" | "SLOT_UNAVAILABLE";

/** Rejection of `HeavySlot.acquire`; `code` is stable and safe to put in an EDR or an error body. */
export class SlotError extends Error {
  /** Stable reason code. */
  readonly code: SlotErrorCode;

  /** Creates a slot error with its reason code. */
  constructor(code: SlotErrorCode, message: string) {
    super(message);
    this.name = "SlotError";
    this.code = code;
  }
}

/** Ownership of the heavy slot; call `release()` on every exit (or hold it with `using`). */
export interface SlotLease {
  /** How long the holder waited in the queue, in milliseconds (0 when the slot was free). */
  readonly waitedMs: number;
  /** How many waiters were ahead when this holder asked (0 when the slot was free). */
  readonly queueDepthAtEntry: number;
  /** True when the holder waited in the queue; false when the slot was free at once. */
  readonly queued: boolean;
  /** Gives the slot up (to the next waiter, if any); calling it again does nothing. */
  release(): void;
  /** Same as `release()`, for `using lease = await slot.acquire(…)`. */
  [Symbol.dispose](): void;
}

/** The slot's state for `decide()` and `/readyz`. */
export interface SlotSnapshot {
  busy: boolean;
  queue_depth: number;
  max_queue: number;
  when_busy: SlotPolicy["when_busy"];
}

/** Cumulative counters for metrics. */
export interface SlotStats {
  acquired_immediately: number;
  acquired_after_wait: number;
  wait_timeouts: number;
  wait_aborts: number;
  queue_full_refusals: number;
  releases: number;
}

/** Options for `HeavySlot.acquire`. */
export interface AcquireOptions {
  /** Aborting it removes the waiter from the queue at once (SLOT_ABORTED). */
  signal?: AbortSignal;
  /** Longest wait in the queue; defaults to the policy's `max_wait_ms`. */
  maxWaitMs?: number;
  /**
   * False: a slot that is not free at once is SLOT_QUEUE_FULL instead of a wait (a request that should
   * spill or be refused rather than queue). Defaults to true.
   */
  queue?: boolean;
}

/**
 * The heavy slot of one Ollama host as the request path uses it: `HeavySlot` in this process, or
 * `RedisHeavySlot` (lib/fleet) shared by every router replica through Redis.
 */
export interface HostSlot {
  /** The slot's state for `decide()`: synchronous (a shared slot answers from its local view). */
  snapshot(): SlotSnapshot;
  /** Cumulative counters (copies) for metrics. */
  stats(): SlotStats;
  /** Takes the slot when that is known at once to be possible; null otherwise (a shared slot: always). */
  tryAcquire(): SlotLease | null;
  /** Takes the slot, waiting in FIFO order when it is busy; rejects with a `SlotError` otherwise. */
  acquire(options?: AcquireOptions): Promise<SlotLease>;
  /** Stops background work (heartbeats, subscriptions); the in-process slot has none. */
  close?(): Promise<void>;
}

/** Constructor options for `HeavySlot`. */
export interface HeavySlotOptions {
  now?: () => number;
  /** Schedules the wait timeout; returns a cancel function. Tests inject a manual clock here. */
  setTimer?: (fn: () => void, ms: number) => () => void;
}

interface Waiter {
  enqueuedAt: number;
  depthAtEntry: number;
  resolve(lease: SlotLease): void;
  reject(error: SlotError): void;
  cancelTimer: (() => void) | null;
  signal: AbortSignal | undefined;
  onAbort: (() => void) | null;
}

function defaultSetTimer(fn: () => void, ms: number): () => void {
  const id = setTimeout(fn, ms);
  return () => clearTimeout(id);
}

/**
 * A granted hold of a heavy slot, in-process or shared: `release()` runs its slot's release once; a second
 * call does nothing, so a late release can never free a later holder's slot.
 */
export class GrantedLease implements SlotLease {
  readonly waitedMs: number;
  readonly queueDepthAtEntry: number;
  readonly queued: boolean;
  #onRelease: (() => void) | null;

  constructor(waitedMs: number, queueDepthAtEntry: number, queued: boolean, onRelease: () => void) {
    this.waitedMs = waitedMs;
    this.queueDepthAtEntry = queueDepthAtEntry;
    this.queued = queued;
    this.#onRelease = onRelease;
  }

  release(): void {
    const onRelease = this.#onRelease;
    this.#onRelease = null;
    onRelease?.();
  }

  [Symbol.dispose](): void {
    this.release();
  }
}

/**
 * The single heavy local inference slot: one holder at a time, a bounded FIFO wait queue, and direct
 * hand-off on release. Light local work never touches it, so it never queues behind heavy work.
 */
export class HeavySlot implements HostSlot {
  #policy: SlotPolicy;
  #now: () => number;
  #setTimer: (fn: () => void, ms: number) => () => void;
  #holder: GrantedLease | null = null;
  #queue: Waiter[] = [];
  #stats: SlotStats = {
    acquired_immediately: 0,
    acquired_after_wait: 0,
    wait_timeouts: 0,
    wait_aborts: 0,
    queue_full_refusals: 0,
    releases: 0,
  };

  /** Creates a free slot governed by `policy` (`max_queue`, `max_wait_ms`, `when_busy`). */
  constructor(policy: SlotPolicy, options: HeavySlotOptions = {}) {
    this.#policy = policy;
    this.#now = options.now ?? Date.now;
    this.#setTimer = options.setTimer ?? defaultSetTimer;
  }

  /** The slot's current state; synchronous. */
  snapshot(): SlotSnapshot {
    return {
      busy: this.#holder !== null,
      max_queue: this.#policy.max_queue,
      queue_depth: this.#queue.length,
      when_busy: this.#policy.when_busy,
    };
  }

  /** Cumulative counters (copies) for metrics. */
  stats(): SlotStats {
    return { ...this.#stats };
  }

  /** Takes the slot when it is free and nobody waits; null otherwise. Never queues. */
  tryAcquire(): SlotLease | null {
    if (this.#holder !== null || this.#queue.length > 0) return null;
    this.#stats.acquired_immediately++;
    return this.#grant(0, 0, false);
  }

  /** Takes the slot, waiting in FIFO order when it is busy; rejects with a `SlotError` otherwise. */
  acquire(options: AcquireOptions = {}): Promise<SlotLease> {
    const { signal } = options;
    if (signal?.aborted) {
      this.#stats.wait_aborts++;
      return Promise.reject(slotAbortedError());
    }
    const immediate = this.tryAcquire();
    if (immediate) return Promise.resolve(immediate);
    if (options.queue === false || this.#queue.length >= this.#policy.max_queue) {
      this.#stats.queue_full_refusals++;
      return Promise.reject(slotQueueFullError(this.#queue.length));
    }
    const maxWaitMs = options.maxWaitMs ?? this.#policy.max_wait_ms;
    return new Promise<SlotLease>((resolve, reject) => {
      const waiter: Waiter = {
        enqueuedAt: this.#now(),
        depthAtEntry: this.#queue.length,
        resolve,
        reject,
        cancelTimer: null,
        signal,
        onAbort: null,
      };
      this.#queue.push(waiter);
      if (signal) {
        waiter.onAbort = () => {
          if (this.#remove(waiter)) {
            this.#stats.wait_aborts++;
            reject(slotAbortedError());
          }
        };
        signal.addEventListener("abort", waiter.onAbort, { once: true });
      }
      if (Number.isFinite(maxWaitMs)) {
        waiter.cancelTimer = this.#setTimer(() => {
          if (this.#remove(waiter)) {
            this.#stats.wait_timeouts++;
            reject(slotWaitTimeoutError(maxWaitMs));
          }
        }, waitTimerMs(maxWaitMs));
      }
    });
  }

  /** Runs `fn` holding the slot and releases it however `fn` ends. */
  async withSlot<T>(fn: (lease: SlotLease) => Promise<T> | T, options: AcquireOptions = {}): Promise<T> {
    const lease = await this.acquire(options);
    try {
      return await fn(lease);
    } finally {
      lease.release();
    }
  }

  #grant(waitedMs: number, depthAtEntry: number, queued: boolean): GrantedLease {
    const lease: GrantedLease = new GrantedLease(waitedMs, depthAtEntry, queued, () => this.#release(lease));
    this.#holder = lease;
    return lease;
  }

  #release(lease: GrantedLease): void {
    if (this.#holder !== lease) return;
    this.#stats.releases++;
    this.#holder = null;
    // Hand the slot straight to the head of the queue so a newcomer's tryAcquire cannot jump it.
    const next = this.#queue.shift();
    if (!next) return;
    this.#detach(next);
    this.#stats.acquired_after_wait++;
    next.resolve(this.#grant(Math.max(0, this.#now() - next.enqueuedAt), next.depthAtEntry, true));
  }

  #remove(waiter: Waiter): boolean {
    const index = this.#queue.indexOf(waiter);
    if (index === -1) return false;
    this.#queue.splice(index, 1);
    this.#detach(waiter);
    return true;
  }

  #detach(waiter: Waiter): void {
    waiter.cancelTimer?.();
    waiter.cancelTimer = null;
    if (waiter.signal && waiter.onAbort) waiter.signal.removeEventListener("abort", waiter.onAbort);
    waiter.onAbort = null;
  }
}

/** A wait for a heavy slot ended by its request's abort signal. */
export function slotAbortedError(): SlotError {
  return new SlotError("SLOT_ABORTED", "the request was cancelled while waiting for the heavy local slot");
}

/** A wait for a heavy slot that lasted `maxWaitMs` without getting it. */
export function slotWaitTimeoutError(maxWaitMs: number): SlotError {
  return new SlotError(
    "SLOT_WAIT_TIMEOUT",
    `waited ${maxWaitMs} ms for the heavy local slot without getting it; retry later or raise slot.max_wait_ms`,
  );
}

/** A queue of `waiting` requests with no room for one more. */
export function slotQueueFullError(waiting: number): SlotError {
  return new SlotError(
    "SLOT_QUEUE_FULL",
    `the heavy local slot has ${waiting} requests waiting already; retry later or raise slot.max_queue`,
  );
}

// setTimeout overflows above 2^31-1 ms and would fire at once.
const MAX_TIMER_MS = 2_147_483_647;

/** The delay to arm for a wait of `maxWaitMs`: never negative, never past what setTimeout can hold. */
export function waitTimerMs(maxWaitMs: number): number {
  return Math.min(Math.max(0, maxWaitMs), MAX_TIMER_MS);
}

/**
 * Makes the heavy slot of one local host, keyed by its base URL. The router creates every slot through
 * one of these, so a slot shared between router replicas (same surface, kept elsewhere) can replace the
 * in-process one without touching the request path.
 */
export type SlotFactory = (hostUrl: string) => HostSlot;

/** The default factory: an in-process slot per host, each governed by the same policy. */
export function inProcessSlots(policy: SlotPolicy, options: HeavySlotOptions = {}): SlotFactory {
  return () => new HeavySlot(policy, options);
}
