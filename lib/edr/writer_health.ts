/**
 * The EDR writer's health: ok, or degraded after a disk error (full, EIO, read-only) with a repair
 * that is retried with backoff until the disk is back. The writer owns what a repair does; this module
 * owns when it runs and what `/readyz` and the request path read.
 */

/** What the request path and `/readyz` see of the writer. */
export interface EdrWriterHealth {
  /** `ok`: commits are accepted; `degraded`: the log cannot be written now and commits are refused. */
  state: "ok" | "degraded";
  /** Why it is degraded (an I/O error's name and message), or null. */
  reason: string | null;
  /** When it became degraded (ms since the epoch), or null. */
  since_ms: number | null;
  /** Repairs tried since it became degraded. */
  repair_attempts: number;
  /** Durable records whose per-request files failed and wait for a retry. */
  files_waiting_retry: number;
}

/** First and longest wait between two repair attempts. */
const FIRST_RETRY_MS = 50;
const LONGEST_RETRY_MS = 1000;

/** Runs `repair` with growing pauses while degraded; a repair that resolves makes the writer ok again. */
export class RepairLoop {
  #repair: () => Promise<void>;
  #onRepaired: () => void;
  #degraded: { reason: string; since: number; attempts: number } | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #running: Promise<void> | null = null;
  #stopped = false;
  #okWaiters: Array<() => void> = [];

  /** `repair` throws while the disk is still unusable; `onRepaired` runs once it succeeds. */
  constructor(repair: () => Promise<void>, onRepaired: () => void) {
    this.#repair = repair;
    this.#onRepaired = onRepaired;
  }

  /** True while commits must be refused. */
  get degraded(): boolean {
    return this.#degraded !== null;
  }

  /** The reason the writer is degraded, or null. */
  get reason(): string | null {
    return this.#degraded?.reason ?? null;
  }

  /** Resolves once the writer is ok (at once when it is). */
  untilOk(): Promise<void> {
    if (!this.#degraded) return Promise.resolve();
    return new Promise((wake) => this.#okWaiters.push(wake));
  }

  /** Marks the writer degraded (the first reason is kept) and starts retrying the repair. */
  degrade(reason: string): void {
    if (this.#stopped) return;
    this.#degraded ??= { reason, since: Date.now(), attempts: 0 };
    this.#schedule();
  }

  /** The health fields this loop owns. */
  snapshot(): Omit<EdrWriterHealth, "files_waiting_retry"> {
    const d = this.#degraded;
    return {
      state: d ? "degraded" : "ok",
      reason: d?.reason ?? null,
      since_ms: d?.since ?? null,
      repair_attempts: d?.attempts ?? 0,
    };
  }

  /** Tries a repair now (close() uses it for a last attempt); resolves true when the writer is ok. */
  async repairNow(): Promise<boolean> {
    if (!this.#degraded) return true;
    this.#clearTimer();
    await this.#attempt();
    return this.#degraded === null;
  }

  /** Stops retrying (at close); waits for a repair under way. */
  async stop(): Promise<void> {
    this.#stopped = true;
    this.#clearTimer();
    await this.#running;
  }

  #schedule(): void {
    if (this.#timer !== null || this.#running !== null || this.#stopped || !this.#degraded) return;
    const delay = Math.min(LONGEST_RETRY_MS, FIRST_RETRY_MS * 2 ** this.#degraded.attempts);
    this.#timer = setTimeout(() => {
      this.#timer = null;
      this.#attempt().then(() => this.#schedule());
    }, delay);
  }

  #clearTimer(): void {
    if (this.#timer === null) return;
    clearTimeout(this.#timer);
    this.#timer = null;
  }

  #attempt(): Promise<void> {
    this.#running ??= (async () => {
      const degraded = this.#degraded;
      if (!degraded) return;
      degraded.attempts++;
      try {
        await this.#repair();
        this.#degraded = null;
        this.#onRepaired();
        for (const wake of this.#okWaiters.splice(0)) wake();
      } catch {
        // Still unusable: the next attempt comes after a longer pause.
      }
    })().finally(() => this.#running = null);
    return this.#running;
  }
}
