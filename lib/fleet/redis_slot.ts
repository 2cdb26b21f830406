/**
 * The heavy slot of one Ollama host shared by every router replica through Redis: one holder across the
 * fleet, a FIFO queue ordered by ticket, a hold lease that expires when its replica stops renewing it,
 * and fencing (a release or renewal must present the holder's member). Same surface as `HeavySlot`.
 *
 * Timing: the hold lease is `holdMs` (10 s) and is renewed every `heartbeatMs` (1 s), so a killed
 * replica's hold, or a waiter of a killed replica, is gone at most `holdMs` after its last renewal.
 * Waiters wake on the slot's pub/sub channel; a bounded poll (`pollMs`, and at the holder's expiry)
 * covers lost messages and expired holds. `snapshot()` answers from a local view that every script
 * reply, every message and every heartbeat refreshes: it lags Redis by one message delivery, and by at
 * most `heartbeatMs` when a hold expires silently.
 */
import {
  type AcquireOptions,
  GrantedLease,
  type HostSlot,
  slotAbortedError,
  SlotError,
  type SlotLease,
  type SlotPolicy,
  slotQueueFullError,
  type SlotSnapshot,
  type SlotStats,
  slotWaitTimeoutError,
  waitTimerMs,
} from "../slot/mod.ts";
import type { RedisConnection, RedisReply } from "./redis_connection.ts";
import { CLAIM, ENTER, HEARTBEAT, LEAVE, RELEASE } from "./redis_slot_scripts.ts";

/** Default hold lease: how long a hold outlives its replica's last heartbeat. */
export const DEFAULT_HOLD_MS = 10_000;
/** Default heartbeat interval (renewals of holds and waiters, and the view's refresh). */
export const DEFAULT_HEARTBEAT_MS = 1_000;
/** Default safety poll of a waiting replica, in case a pub/sub message is lost. */
export const DEFAULT_POLL_MS = 1_000;

/** Options for `RedisHeavySlot.open`. */
export interface RedisSlotOptions {
  holdMs?: number;
  heartbeatMs?: number;
  pollMs?: number;
  /** Operational log lines (never a secret). */
  log?: (line: string) => void;
}

interface Waiter {
  member: string;
  enqueuedAt: number;
  depthAtEntry: number;
  settled: boolean;
  resolve(lease: SlotLease): void;
  reject(error: SlotError): void;
  cleanup(): void;
}

type Reply = [status: string, member: string, n: number, busy: number, depth: number];

/** The Redis-backed heavy slot of one Ollama host. */
export class RedisHeavySlot implements HostSlot {
  readonly hostUrl: string;
  #redis: RedisConnection;
  #policy: SlotPolicy;
  #keys: string[];
  #holdMs: number;
  #heartbeatMs: number;
  #pollMs: number;
  #log: (line: string) => void;
  #view = { busy: false, queue_depth: 0 };
  /** Members this process holds (normally at most one; a lost one lingers until its heartbeat says so). */
  #holding = new Set<string>();
  /** This process's waiters, in ticket order. */
  #waiters: Waiter[] = [];
  #claiming = false;
  #claimAgain = false;
  #pollTimer: ReturnType<typeof setTimeout> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #closed = false;
  #stats: SlotStats = {
    acquired_immediately: 0,
    acquired_after_wait: 0,
    wait_timeouts: 0,
    wait_aborts: 0,
    queue_full_refusals: 0,
    releases: 0,
  };

  private constructor(
    redis: RedisConnection,
    hostUrl: string,
    policy: SlotPolicy,
    options: RedisSlotOptions,
  ) {
    this.#redis = redis;
    this.hostUrl = hostUrl;
    this.#policy = policy;
    const prefix = `hi:slot:${hostUrl}`;
    this.#keys = [
      `${prefix}:holder`,
      `${prefix}:queue`,
      `${prefix}:alive`,
      `${prefix}:ticket`,
      `${prefix}:events`,
    ];
    this.#holdMs = options.holdMs ?? DEFAULT_HOLD_MS;
    this.#heartbeatMs = options.heartbeatMs ?? DEFAULT_HEARTBEAT_MS;
    this.#pollMs = options.pollMs ?? DEFAULT_POLL_MS;
    this.#log = options.log ?? (() => {});
  }

  /** Subscribes to the slot's channel, reads its state, and starts the heartbeat. */
  static async open(
    redis: RedisConnection,
    hostUrl: string,
    policy: SlotPolicy,
    options: RedisSlotOptions = {},
  ): Promise<RedisHeavySlot> {
    const slot = new RedisHeavySlot(redis, hostUrl, policy, options);
    await redis.subscribe(slot.#keys[4], (message) => slot.#onMessage(message));
    await slot.#beat();
    slot.#heartbeat = setInterval(() => slot.#beat(), slot.#heartbeatMs);
    Deno.unrefTimer(slot.#heartbeat);
    return slot;
  }

  /** The local view of the shared slot; synchronous (see the module comment for its staleness). */
  snapshot(): SlotSnapshot {
    return {
      busy: this.#view.busy,
      max_queue: this.#policy.max_queue,
      queue_depth: this.#view.queue_depth,
      when_busy: this.#policy.when_busy,
    };
  }

  /** This replica's cumulative counters (copies). */
  stats(): SlotStats {
    return { ...this.#stats };
  }

  /** Whether the slot is free is known only to Redis: always null, `acquire` says so. */
  tryAcquire(): SlotLease | null {
    return null;
  }

  /**
   * Takes the slot across the fleet, waiting in FIFO order when it is busy (with `queue: false`, a slot
   * found busy is SLOT_QUEUE_FULL at once). Rejects with SLOT_UNAVAILABLE when Redis cannot be reached.
   */
  async acquire(options: AcquireOptions = {}): Promise<SlotLease> {
    const { signal } = options;
    if (signal?.aborted) {
      this.#stats.wait_aborts++;
      throw slotAbortedError();
    }
    const maxQueue = options.queue === false ? 0 : this.#policy.max_queue;
    const enqueuedAt = Date.now();
    let reply: Reply;
    try {
      reply = await this.#run(ENTER, [crypto.randomUUID(), this.#holdMs, maxQueue]);
    } catch (error) {
      throw unavailable(error);
    }
    const [status, member, depthAtEntry] = reply;
    if (status === "granted") {
      if (signal?.aborted) {
        this.#releaseMember(member);
        this.#stats.wait_aborts++;
        throw slotAbortedError();
      }
      this.#stats.acquired_immediately++;
      return this.#grant(member, 0, 0, false);
    }
    if (status === "full") {
      this.#stats.queue_full_refusals++;
      throw new SlotError(
        "SLOT_QUEUE_FULL",
        maxQueue === 0
          ? "the heavy local slot is held by another request (possibly on another replica)"
          : slotQueueFullError(depthAtEntry).message,
      );
    }
    return await this.#wait(member, enqueuedAt, depthAtEntry, options);
  }

  #wait(
    member: string,
    enqueuedAt: number,
    depthAtEntry: number,
    options: AcquireOptions,
  ): Promise<SlotLease> {
    const { signal } = options;
    const maxWaitMs = options.maxWaitMs ?? this.#policy.max_wait_ms;
    return new Promise<SlotLease>((resolve, reject) => {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const onAbort = () => this.#giveUp(waiter, "aborted", slotAbortedError());
      const waiter: Waiter = {
        member,
        enqueuedAt,
        depthAtEntry,
        settled: false,
        resolve,
        reject,
        cleanup: () => {
          clearTimeout(timer);
          signal?.removeEventListener("abort", onAbort);
        },
      };
      this.#waiters.push(waiter);
      this.#waiters.sort((a, b) => ticketOf(a.member) - ticketOf(b.member));
      signal?.addEventListener("abort", onAbort, { once: true });
      if (Number.isFinite(maxWaitMs)) {
        timer = setTimeout(() =>
          this.#giveUp(
            waiter,
            "timeout",
            slotWaitTimeoutError(maxWaitMs),
          ), waitTimerMs(maxWaitMs));
      }
      this.#claim();
    });
  }

  #giveUp(waiter: Waiter, why: "aborted" | "timeout", error: SlotError): void {
    if (waiter.settled) return;
    waiter.settled = true;
    waiter.cleanup();
    this.#waiters = this.#waiters.filter((w) => w !== waiter);
    if (why === "aborted") this.#stats.wait_aborts++;
    else this.#stats.wait_timeouts++;
    waiter.reject(error);
    // If Redis is out of reach the member's deadline drops it within holdMs anyway.
    this.#run(LEAVE, [waiter.member]).catch(() => {});
    // A claim that granted it meanwhile is released where its reply arrives (the waiter is settled).
  }

  /** Asks Redis for the earliest local waiter; one claim at a time, re-run when asked meanwhile. */
  #claim(): void {
    if (this.#claiming) {
      this.#claimAgain = true;
      return;
    }
    const waiter = this.#waiters[0];
    if (!waiter || this.#closed) return;
    this.#claiming = true;
    clearTimeout(this.#pollTimer);
    this.#run(CLAIM, [waiter.member, this.#holdMs]).then(([status, member, holderPttl]) => {
      if (status === "granted") {
        if (waiter.settled) {
          this.#releaseMember(member);
          return;
        }
        waiter.settled = true;
        waiter.cleanup();
        this.#waiters = this.#waiters.filter((w) => w !== waiter);
        this.#stats.acquired_after_wait++;
        waiter.resolve(
          this.#grant(member, Math.max(0, Date.now() - waiter.enqueuedAt), waiter.depthAtEntry, true),
        );
        this.#claimAgain = true;
        return;
      }
      // Re-check when the holder's lease would expire (if sooner than the poll): that is when a dead
      // replica's hold frees the slot, and nobody publishes it.
      this.#schedulePoll(holderPttl > 0 ? Math.min(this.#pollMs, holderPttl + 5) : this.#pollMs);
    }, () => this.#schedulePoll(this.#pollMs)).finally(() => {
      this.#claiming = false;
      if (this.#claimAgain) {
        this.#claimAgain = false;
        this.#claim();
      }
    });
  }

  #schedulePoll(ms: number): void {
    clearTimeout(this.#pollTimer);
    if (this.#waiters.length === 0 || this.#closed) return;
    this.#pollTimer = setTimeout(() => this.#claim(), ms);
  }

  /** `member`, the fencing token Redis records as holder, is what the release names. */
  #grant(member: string, waitedMs: number, depthAtEntry: number, queued: boolean): GrantedLease {
    this.#holding.add(member);
    return new GrantedLease(waitedMs, depthAtEntry, queued, () => {
      this.#stats.releases++;
      this.#releaseMember(member);
    });
  }

  #releaseMember(member: string): void {
    this.#holding.delete(member);
    this.#run(RELEASE, [member]).catch((error) => {
      this.#log(
        `heavy slot of ${this.hostUrl}: release did not reach Redis (${errorName(error)}); ` +
          `the hold expires within ${this.#holdMs} ms`,
      );
    });
  }

  /** Renews this process's holds and waiters, and refreshes the view. */
  async #beat(): Promise<void> {
    const waiting = this.#waiters.map((w) => w.member);
    const holders = this.#holding.size > 0 ? [...this.#holding] : [""];
    for (const mine of holders) {
      try {
        const [status] = await this.#run(HEARTBEAT, [this.#holdMs, mine, ...waiting]);
        if (status === "lost" && this.#holding.delete(mine)) {
          this.#log(
            `heavy slot of ${this.hostUrl}: a hold expired before its request ended (Redis was out of reach ` +
              "or restarted); another replica may start a heavy inference now",
          );
        }
      } catch {
        // Out of reach: the view keeps its last state; requests that need Redis fail closed meanwhile.
      }
    }
  }

  #onMessage(message: string): void {
    const [busy, depth] = message.split(" ").map(Number);
    if (Number.isFinite(busy) && Number.isFinite(depth)) {
      this.#view = { busy: busy === 1, queue_depth: depth };
    }
    if (this.#waiters.length > 0) this.#claim();
  }

  async #run(script: typeof ENTER, args: (string | number)[]): Promise<Reply> {
    const raw = await this.#redis.script(script, this.#keys, args) as RedisReply[];
    const reply: Reply = [String(raw[0]), String(raw[1]), Number(raw[2]), Number(raw[3]), Number(raw[4])];
    this.#view = { busy: reply[3] === 1, queue_depth: reply[4] };
    return reply;
  }

  /** Stops the heartbeat and the poll; rejects waiters still queued (the server has stopped). */
  close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#heartbeat);
    clearTimeout(this.#pollTimer);
    for (const waiter of this.#waiters) {
      waiter.settled = true;
      waiter.cleanup();
      waiter.reject(slotAbortedError());
    }
    this.#waiters = [];
    return Promise.resolve();
  }
}

function ticketOf(member: string): number {
  return Number(member.slice(0, member.indexOf(":")));
}

function unavailable(error: unknown): SlotError {
  return new SlotError(
    "SLOT_UNAVAILABLE",
    `the shared heavy slot could not be reached in Redis (${errorName(error)}); retry shortly`,
  );
}

function errorName(error: unknown): string {
  return error instanceof Error ? error.name : typeof error;
}
