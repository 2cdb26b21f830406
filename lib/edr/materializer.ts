/**
 * Scheduling the per-request files: durable WAL ranges wait for a quiet moment (`idleMs` without a new
 * durable batch, or `maxDeferred` records waiting) and are then handed to the worker
 * (`materializer_worker.ts`), which reads the lines back from the WAL. Owns the worker's lifecycle and
 * replies, the backlog bound that slows commits when the worker falls behind, `flush()`'s wait, and the
 * retry of files that failed.
 */

import type { EdrLogEvent } from "./errors.ts";
import type { MaterializeReply, MaterializeRequest } from "./materializer_protocol.ts";
import { RepairLoop } from "./writer_health.ts";

/** Options of a `Materializer` (see `EdrWriterOptions` for what each means). */
export interface MaterializerOptions {
  idleMs: number;
  maxDeferred: number;
  maxBacklog: number;
}

/** A WAL range posted for its files: `count` records in `[start, end)` of a day's log. */
interface FileJob {
  day: string;
  start: number;
  end: number;
  count: number;
}

/** The files of one writer's durable records. */
export class Materializer {
  readonly #dir: string;
  readonly #log: (event: EdrLogEvent) => void;
  readonly #options: MaterializerOptions;
  #worker: Worker | null = null;
  #nextJobId = 0;
  #inflight = new Map<number, { count: number; resolve: (reply: MaterializeReply) => void }>();
  #backlogCount = 0;
  #backlogWaiter: (() => void) | null = null;
  #idleWaiters: Array<() => void> = [];
  #flushWaiters: Array<{ id: number; wake: () => void }> = [];
  /** Per day, the durable WAL lines whose files have not been asked of the worker yet. */
  #unposted = new Map<string, { end: number; count: number }>();
  /** Per day, the WAL offset up to which files were asked for (or restored at open). */
  #postedTo = new Map<string, number>();
  #idleTimer: ReturnType<typeof setTimeout> | null = null;
  #lastDurableAt = 0;
  #closing = false;
  /** Files of durable records that failed to materialize, posted again once the disk is back. */
  #retryFiles: FileJob[] = [];
  #retryLoop = new RepairLoop(() => this.#retryFileJobs(), () => {
    this.#log({ level: "warn", msg: "edr files written after an earlier failure" });
  });
  readonly stats = { materialized: 0, materialize_errors: 0, inputs_written: 0 };

  /** The files under `dir`; the worker starts with the first job. */
  constructor(dir: string, log: (event: EdrLogEvent) => void, options: MaterializerOptions) {
    this.#dir = dir;
    this.#log = log;
    this.#options = options;
  }

  /** Notes that a day's files up to `offset` are asked for or in place (recovery, or a log just opened). */
  postedUpTo(day: string, offset: number, onlyIfUnknown = false): void {
    if (onlyIfUnknown && this.#postedTo.has(day)) return;
    this.#postedTo.set(day, offset);
  }

  /** Asks the worker to restore the files of verified lines (`[lineStart, lineEnd)` offset pairs). */
  restore(day: string, lines: number[]): Promise<MaterializeReply> {
    const request = { day, start: lines[0], end: lines[lines.length - 1], lines, checkFirst: true };
    return this.#post(request, lines.length / 2);
  }

  /** Notes that a day's log holds `count` more durable records, up to `end`, that need their files. */
  addDurable(day: string, end: number, count: number): void {
    let range = this.#unposted.get(day);
    if (!range) this.#unposted.set(day, range = { end: 0, count: 0 });
    range.count += count;
    range.end = end;
  }

  /** After a batch: asks for the waiting files now, or once commits pause. */
  scheduleFiles(): void {
    if (this.#options.idleMs === 0 || this.#closing) {
      this.postDeferred();
      return;
    }
    this.#lastDurableAt = performance.now();
    if (this.#deferredCount() >= this.#options.maxDeferred) this.postDeferred();
    else if (this.#idleTimer === null) this.#scheduleIdleCheck(this.#options.idleMs);
  }

  /** Hands every waiting range to the worker now. */
  postDeferred(): void {
    if (this.#idleTimer !== null) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = null;
    }
    const ranges = this.#unposted;
    this.#unposted = new Map();
    for (const [day, { end, count }] of ranges) {
      const start = this.#postedTo.get(day)!;
      this.#postedTo.set(day, end);
      this.#post({ day, start, end, lines: null, checkFirst: false }, count).then((reply) => {
        this.#countFiles(reply);
        if (reply.errors.length === 0) return;
        this.#log({
          level: "error",
          msg: "edr file materialization failed; the wal keeps the records and the writer retries",
          reason: reply.errors[0],
          failures: reply.errors.length,
        });
        this.#retryFiles.push({ day, start, end, count });
        this.#retryLoop.degrade(reply.errors[0]);
      });
    }
  }

  /** Resolves when the worker has room for more records, or null when it has room now. */
  roomForMore(): Promise<void> | null {
    if (this.#backlogCount <= this.#options.maxBacklog) return null;
    return new Promise<void>((wake) => this.#backlogWaiter = wake);
  }

  /** Records with the worker or waiting for a quiet moment. */
  pendingCount(): number {
    return this.#backlogCount + this.#deferredCount();
  }

  /** Waits until the files of every durable record so far exist (or failed). */
  async flush(): Promise<void> {
    this.postDeferred();
    const target = this.#nextJobId;
    if (!this.#hasInflightUpTo(target)) return;
    await new Promise<void>((wake) => this.#flushWaiters.push({ id: target, wake }));
  }

  /** Retries failed files soon (the disk was repaired). */
  retrySoon(): void {
    if (this.#retryFiles.length > 0) this.#retryLoop.degrade("retry after the wal repair");
  }

  /** Durable records whose files failed and wait for a retry. */
  waitingRetryCount(): number {
    let count = 0;
    for (const job of this.#retryFiles) count += job.count;
    return count;
  }

  /** Why files wait for a retry, or null. */
  get retryReason(): string | null {
    return this.#retryLoop.reason;
  }

  /** From now on each durable batch's files are asked for at once (the writer is closing). */
  markClosing(): void {
    this.#closing = true;
  }

  /** Posts what waits, lets the worker finish, tries failed files once more, then stops the worker. */
  async close(lastRepair: () => Promise<unknown>, stopRepair: () => Promise<void>): Promise<void> {
    this.#closing = true;
    this.postDeferred();
    if (this.#inflight.size > 0) await new Promise<void>((wake) => this.#idleWaiters.push(wake));
    // One last try for what a disk error held back, then no more retries.
    await lastRepair();
    await this.#retryLoop.repairNow();
    await Promise.all([stopRepair(), this.#retryLoop.stop()]);
    this.terminate();
  }

  /** Stops the worker at once (open() failed, or close() is done with it). */
  terminate(): void {
    this.#worker?.terminate();
    this.#worker = null;
  }

  #scheduleIdleCheck(delay: number): void {
    const timer = setTimeout(() => {
      this.#idleTimer = null;
      const quiet = performance.now() - this.#lastDurableAt;
      if (quiet >= this.#options.idleMs) this.postDeferred();
      else this.#scheduleIdleCheck(this.#options.idleMs - quiet);
    }, delay);
    // The timer must never keep a process alive; close() and flush() write what is waiting.
    Deno.unrefTimer(timer);
    this.#idleTimer = timer;
  }

  #countFiles(reply: MaterializeReply): void {
    this.stats.materialized += reply.files;
    this.stats.inputs_written += reply.inputs;
    this.stats.materialize_errors += reply.errors.length;
  }

  /**
   * Asks again for the files that failed; a range is posted whole with `checkFirst`, so files made the
   * first time are kept and only the missing ones are written. Throws while any still fails.
   */
  async #retryFileJobs(): Promise<void> {
    const jobs = this.#retryFiles;
    this.#retryFiles = [];
    const failed: FileJob[] = [];
    let reason = "";
    await Promise.all(jobs.map(async (job) => {
      const reply = await this.#post({ ...job, lines: null, checkFirst: true }, job.count);
      this.#countFiles(reply);
      if (reply.errors.length > 0) {
        failed.push(job);
        reason = reply.errors[0];
      }
    }));
    this.#retryFiles.push(...failed);
    if (failed.length > 0) throw new Error(reason);
  }

  #deferredCount(): number {
    let count = 0;
    for (const range of this.#unposted.values()) count += range.count;
    return count;
  }

  #materializer(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(new URL("./materializer_worker.ts", import.meta.url).href, { type: "module" });
    worker.onmessage = (event: MessageEvent<MaterializeReply>) => this.#onReply(event.data);
    worker.onerror = (event: ErrorEvent) => {
      event.preventDefault();
      this.#onWorkerCrash(event.message);
    };
    this.#worker = worker;
    return worker;
  }

  /** Asks the worker for the files of `count` records in the WAL lines of `request`. */
  #post(request: Omit<MaterializeRequest, "id" | "dir">, count: number): Promise<MaterializeReply> {
    const id = ++this.#nextJobId;
    const done = Promise.withResolvers<MaterializeReply>();
    this.#inflight.set(id, { count, resolve: done.resolve });
    this.#backlogCount += count;
    this.#materializer().postMessage({ ...request, id, dir: this.#dir } satisfies MaterializeRequest);
    return done.promise;
  }

  #hasInflightUpTo(id: number): boolean {
    for (const pendingId of this.#inflight.keys()) if (pendingId <= id) return true;
    return false;
  }

  #onReply(reply: MaterializeReply): void {
    const entry = this.#inflight.get(reply.id);
    if (!entry) return;
    this.#inflight.delete(reply.id);
    this.#backlogCount -= entry.count;
    entry.resolve(reply);
    if (this.#backlogWaiter && this.#backlogCount <= this.#options.maxBacklog) {
      const wake = this.#backlogWaiter;
      this.#backlogWaiter = null;
      wake();
    }
    if (this.#flushWaiters.length > 0) {
      const waiting = this.#flushWaiters;
      this.#flushWaiters = waiting.filter((w) => this.#hasInflightUpTo(w.id));
      for (const w of waiting) if (!this.#hasInflightUpTo(w.id)) w.wake();
    }
    if (this.#inflight.size === 0) {
      const waiters = this.#idleWaiters;
      this.#idleWaiters = [];
      for (const wake of waiters) wake();
    }
  }

  #onWorkerCrash(message: string): void {
    this.#log({
      level: "error",
      msg: "edr materializer worker crashed; open() restores its files from the wal",
      reason: message,
    });
    this.terminate();
    for (const [id, entry] of [...this.#inflight]) {
      this.#onReply({
        id,
        files: 0,
        inputs: 0,
        repaired: 0,
        newestFileMs: 0,
        errors: Array.from({ length: entry.count }, () => message),
      });
    }
  }
}
