/**
 * Group commit: one loop takes every record sealed while the previous write + fdatasync ran and makes them
 * durable with one write and one fdatasync per day's log; only then do their commits resolve. Each record's
 * WAL line is encoded into its day's filling batch as it is sealed, so its text does not survive on the
 * heap until the batch is written. A failed batch rejects everything queued behind it too (it chains onto
 * the failed records). Also owns the blocking-sync heuristic (`#servingOneAtATime`).
 */

import type { LoggedInputs } from "./inputs.ts";
import type { EdrRecord } from "./types.ts";
import { Utf8Builder } from "./utf8_builder.ts";
import { appendWalLine } from "./wal_line.ts";
import type { WalLog } from "./wal_log.ts";

/** A sealed record whose WAL line is already encoded into the filling batch, waiting for its fdatasync. */
export interface Pending {
  day: string;
  record: EdrRecord;
  resolve: (record: EdrRecord) => void;
  reject: (error: unknown) => void;
}

/** What the loop asks of the writer around it. */
export interface GroupCommitHooks {
  /** True when no request is in flight besides those waiting on the WAL (see `EdrWriterOptions`). */
  eventLoopIdle: () => boolean;
  /** Resolves when the materializer has room for more durable records, or null when it has room now. */
  roomForMore: () => Promise<void> | null;
  /** A batch is durable; its commits resolve right after. */
  durable: (batch: Pending[]) => void;
  /** A durable batch's commits have resolved (its files may be asked for now). */
  resolved: (batch: Pending[]) => void;
  /** A batch failed: `records` commits are rejected with the error this returns. */
  failed: (error: unknown, records: number) => Error;
}

/** Lone batches in a row that count as serving one request at a time (see `#servingOneAtATime`). */
const SOLO_BATCHES_BEFORE_BLOCKING = 32;

/** The commit queue and its loop over a `WalLog`. */
export class GroupCommit {
  readonly #wal: WalLog;
  readonly #inputs: LoggedInputs;
  readonly #hooks: GroupCommitHooks;
  #queue: Pending[] = [];
  #running = false;
  #loop: Promise<void> = Promise.resolve();
  /** Per day, the WAL lines of the records in `#queue`. */
  #filling = new Map<string, Utf8Builder>();
  /** Emptied builders, reused for the next batches. */
  #spareBuffers: Utf8Builder[] = [];
  /** `stats.batches` when a record last arrived during another's write, or a batch had company. */
  #concurrentAtBatch = 0;
  #lastCommit: Promise<unknown> = Promise.resolve();
  readonly stats = { committed: 0, rejected: 0, batches: 0, blocking_syncs: 0, max_batch: 0 };

  /** A loop over `wal`; `inputs` says which inputs the log already carries. */
  constructor(wal: WalLog, inputs: LoggedInputs, hooks: GroupCommitHooks) {
    this.#wal = wal;
    this.#inputs = inputs;
    this.#hooks = hooks;
  }

  /** Records waiting for their batch. */
  get pending(): number {
    return this.#queue.length;
  }

  /** The last commit enqueued (commits settle in order, so it settles after all the others). */
  get lastCommit(): Promise<unknown> {
    return this.#lastCommit;
  }

  /**
   * Queues a sealed record (`text`: its canonical JSON) with its captured input, if any, and resolves with
   * the record once its batch is durable.
   */
  enqueue(
    day: string,
    record: EdrRecord,
    text: string,
    input: { text: string; hash: string } | null,
  ): Promise<EdrRecord> {
    const done = Promise.withResolvers<EdrRecord>();
    this.#encodeLine(day, text, input);
    this.#queue.push({ day, record, resolve: done.resolve, reject: done.reject });
    this.#lastCommit = done.promise;
    if (this.#running) this.#concurrentAtBatch = this.stats.batches;
    if (!this.#running) {
      this.#running = true;
      this.#loop = this.#run();
    }
    return done.promise;
  }

  /** Resolves once the loop has nothing left to write. */
  async idle(): Promise<void> {
    while (this.#running) await this.#loop;
  }

  /** Appends a record's WAL line to the filling batch of its day. */
  #encodeLine(day: string, text: string, input: { text: string; hash: string } | null): void {
    let bytes = this.#filling.get(day);
    if (!bytes) {
      bytes = this.#spareBuffers.pop()?.reset() ?? new Utf8Builder();
      this.#filling.set(day, bytes);
    }
    // An input already in the log is durable there (or will be with an earlier line); repeating it would
    // only grow the log and the sync.
    const logInput = input !== null && this.#inputs.firstTime(input.hash);
    appendWalLine(bytes, text, logInput ? input.text : null);
  }

  /**
   * Whether a blocking fdatasync is free: this batch is the only work in flight and, for the last
   * `SOLO_BATCHES_BEFORE_BLOCKING` batches, no record arrived while another was being written. Under any
   * concurrency, requests not yet seen by the handler would wait behind the sync instead of overlapping it.
   * Never right after a batch in the same run: blocking would hold back the responses it just released.
   */
  #servingOneAtATime(batchSize: number): boolean {
    if (batchSize !== 1 || !this.#hooks.eventLoopIdle()) {
      this.#concurrentAtBatch = this.stats.batches;
      return false;
    }
    return this.stats.batches - this.#concurrentAtBatch >= SOLO_BATCHES_BEFORE_BLOCKING;
  }

  /** Takes the filling lines for writing and starts a new filling batch. */
  #takeFilling(): Map<string, Utf8Builder> {
    const lines = this.#filling;
    this.#filling = new Map();
    return lines;
  }

  #recycle(lines: Map<string, Utf8Builder>): void {
    // Two builders cover the steady state (one written while the next fills); more only around midnight.
    for (const bytes of lines.values()) if (this.#spareBuffers.length < 2) this.#spareBuffers.push(bytes);
  }

  async #run(): Promise<void> {
    try {
      // Let the rest of the current task commit too, so a burst started together shares the first fdatasync.
      await null;
      let firstBatch = true;
      while (this.#queue.length > 0) {
        const room = this.#hooks.roomForMore();
        if (room !== null) await room;
        const batch = this.#queue;
        this.#queue = [];
        const lines = this.#takeFilling();
        const blockingSync = firstBatch && this.#servingOneAtATime(batch.length);
        firstBatch = false;
        try {
          await this.#wal.append(lines, blockingSync);
          if (blockingSync) this.stats.blocking_syncs += lines.size;
        } catch (error) {
          this.#fail(batch, error);
          continue;
        } finally {
          this.#recycle(lines);
        }
        this.stats.batches++;
        this.stats.committed += batch.length;
        if (batch.length > this.stats.max_batch) this.stats.max_batch = batch.length;
        this.#hooks.durable(batch);
        for (const p of batch) p.resolve(p.record);
        this.#hooks.resolved(batch);
      }
    } finally {
      this.#running = false;
    }
  }

  #fail(batch: Pending[], error: unknown): void {
    // Records queued behind the failed batch chain onto it, so they fail too; the chain restarts from the
    // last durable record (the writer's), which keeps sequences gap-free.
    const rest = this.#queue;
    this.#queue = [];
    this.#recycle(this.#takeFilling());
    // Inputs of the lost lines may have been counted as logged; forgetting all only repeats some later.
    this.#inputs.forget();
    this.stats.rejected += batch.length + rest.length;
    const failure = this.#hooks.failed(error, batch.length + rest.length);
    for (const p of batch) p.reject(failure);
    for (const p of rest) p.reject(failure);
  }
}
