/**
 * The durable EDR writer, composed of parts that each own one job: `seal.ts` (hashes and canonical text),
 * `inputs.ts` (captured inputs), `group_commit.ts` (batches, one write + fdatasync each), `wal_log.ts`
 * (the per-day log files), `materializer.ts` (per-request files, via its worker), `recovery.ts` (open())
 * and `writer_health.ts` (degraded state and repair). This file keeps the chain heads and the public API.
 */

import { captureInput, LoggedInputs } from "./inputs.ts";
import {
  defaultLog,
  type EdrLogEvent,
  EdrUnavailableError,
  EdrValidationError,
  EdrWriteError,
  reasonOf,
  remedyFor,
} from "./errors.ts";
import { GroupCommit, type Pending } from "./group_commit.ts";
import { edrDay } from "./hashes.ts";
import { Materializer } from "./materializer.ts";
import { type ChainHead, type EdrRecoveryStats, recover } from "./recovery.ts";
import { validateEdr } from "./schema.ts";
import { sealDraft } from "./seal.ts";
import type { EdrDraft, EdrRecord } from "./types.ts";
import { WalLog } from "./wal_log.ts";
import { type EdrWriterHealth, RepairLoop } from "./writer_health.ts";

export { EdrUnavailableError, EdrValidationError, EdrWriteError, remedyFor } from "./errors.ts";
export type { EdrLogEvent } from "./errors.ts";
export type { EdrRecoveryStats } from "./recovery.ts";
export { writePolicySnapshot } from "./policy_snapshots.ts";

/** Options for `EdrWriter.open`. */
export interface EdrWriterOptions {
  /** Validate every record against the schema before it is enqueued (default true). */
  validate?: boolean;
  /** Where warnings and errors go; defaults to one JSON line on stderr. */
  log?: (event: EdrLogEvent) => void;
  /**
   * Most durable records allowed to wait for their per-request file (default 1,000,000). Beyond it the WAL
   * loop pauses, so commits slow down to the file-creation rate instead of growing memory without bound.
   */
  maxMaterializeBacklog?: number;
  /**
   * Per-request files are written once commits have paused this long (default 200 ms), or at once when
   * `maxDeferred` records are waiting. Creating a file costs far more than appending to the WAL, so
   * under a burst the files follow in the next quiet moment; the WAL already holds every record durably.
   * 0 writes each batch's files as soon as it is durable.
   */
  materializeIdleMs?: number;
  /**
   * Most durable records that may wait for a quiet moment before their files are written (default 131072).
   * Waiting costs no memory (the WAL holds them); the bound is how long a stop may spend writing files.
   */
  maxDeferred?: number;
  /**
   * True when no request is in flight besides those waiting on the WAL. A lone record's fdatasync then
   * runs on the calling thread: it stalls the event loop, which has nothing else to do, and skips the
   * round trip through the blocking thread pool. Default: never.
   */
  eventLoopIdle?: () => boolean;
  /**
   * Keep zeros written ahead of each WAL's end (default true); false is the plain twin, for the
   * equivalence test and the bench (see `WalLogOptions.zeroAhead`).
   */
  zeroAhead?: boolean;
}

/** Options for `EdrWriter.commit`. */
export interface EdrCommitOptions {
  /** The request's input, kept at `inputs/<sha256>.json` and pointed to by `replay.required_inputs_pointer`. */
  capturedInput?: unknown;
  /** The same input already in RFC 8785 form with its SHA-256 (the caller hashed it anyway); wins over `capturedInput`. */
  capturedInputCanonical?: { text: string; hash: string };
}

/** Counters of one writer since `open()`. */
export interface EdrWriterStats {
  committed: number;
  rejected: number;
  batches: number;
  /** Batches whose fdatasync ran on the calling thread (see `eventLoopIdle`). */
  blocking_syncs: number;
  max_batch: number;
  pending_wal: number;
  pending_materialize: number;
  materialized: number;
  materialize_errors: number;
  inputs_written: number;
  broken: boolean;
  recovery: EdrRecoveryStats;
}

/** The durable, chained EDR writer for one artifacts directory (one writer per directory at a time). */
export class EdrWriter {
  readonly #dir: string;
  readonly #validate: boolean;
  readonly #log: (event: EdrLogEvent) => void;
  /** Each day's head as sealed (including records not yet durable). */
  #heads = new Map<string, ChainHead>();
  /** Each day's durable head; a failed batch puts `#heads` back to it. */
  #durable = new Map<string, ChainHead>();
  readonly #inputs = new LoggedInputs();
  readonly #wal: WalLog;
  readonly #materializer: Materializer;
  readonly #commits: GroupCommit;
  /** Degraded after a disk error, with the repair retried until the log can be written again. */
  readonly #repair: RepairLoop;
  #sealRejected = 0;
  #closed = false;
  #closing: Promise<void> | null = null;
  #recovery: EdrRecoveryStats | null = null;

  private constructor(dir: string, options: EdrWriterOptions) {
    this.#dir = dir.replace(/\/+$/, "") || "/";
    this.#validate = options.validate ?? true;
    this.#log = options.log ?? defaultLog;
    this.#materializer = new Materializer(this.#dir, this.#log, {
      maxBacklog: Math.max(1, options.maxMaterializeBacklog ?? 1_000_000),
      idleMs: Math.max(0, options.materializeIdleMs ?? 200),
      maxDeferred: Math.max(1, options.maxDeferred ?? 131_072),
    });
    this.#wal = new WalLog(this.#dir, this.#log, {
      zeroAhead: options.zeroAhead,
      // Lines already in the file were restored by open() or asked for before the handle was last closed.
      onOpen: (day, size) => this.#materializer.postedUpTo(day, size, true),
    });
    this.#repair = new RepairLoop(() => this.#wal.repair(), () => {
      this.#log({ level: "warn", msg: "edr wal writable again; commits accepted" });
      this.#materializer.retrySoon();
    });
    const eventLoopIdle = options.eventLoopIdle ?? (() => false);
    this.#commits = new GroupCommit(this.#wal, this.#inputs, {
      eventLoopIdle,
      roomForMore: () => this.#materializer.roomForMore(),
      durable: (batch) => {
        for (const p of batch) {
          this.#durable.set(p.day, { sequence: p.record.sequence, edrHash: p.record.edr_hash });
        }
      },
      resolved: (batch) => this.#materializeLater(batch),
      failed: (error, records) => this.#onBatchFailed(error, records),
    });
  }

  /** Opens the writer: creates the layout, replays the WAL, restores missing files and continues each day's chain. */
  static async open(artifactsDir: string, options: EdrWriterOptions = {}): Promise<EdrWriter> {
    const writer = new EdrWriter(artifactsDir, options);
    try {
      const { heads, stats } = await recover({
        dir: writer.#dir,
        log: writer.#log,
        wal: writer.#wal,
        materializer: writer.#materializer,
        inputs: writer.#inputs,
      });
      writer.#heads = heads;
      writer.#durable = new Map(heads);
      writer.#recovery = stats;
    } catch (error) {
      writer.#materializer.terminate();
      if (error instanceof EdrWriteError) throw error;
      throw new EdrWriteError(
        `cannot recover the edr write-ahead log (${reasonOf(error)}); ${remedyFor(error, artifactsDir)}`,
        { cause: error },
      );
    }
    return writer;
  }

  /**
   * Seals a draft (sequence, prev_edr_hash, decision_core_hash, edr_hash) and resolves with the record
   * once it is durable in the WAL. Rejects with `EdrWriteError` when it cannot be made durable.
   */
  commit(draft: EdrDraft, options: EdrCommitOptions = {}): Promise<EdrRecord> {
    if (this.#closed) return Promise.reject(new EdrWriteError("edr writer is closed; open a new writer"));
    if (this.#repair.degraded) return Promise.reject(new EdrUnavailableError(this.#repair.reason!));
    try {
      return this.#seal(draft, options);
    } catch (error) {
      this.#sealRejected++;
      if (error instanceof EdrWriteError) return Promise.reject(error);
      return Promise.reject(
        new EdrValidationError(`edr draft cannot be sealed (${reasonOf(error)}); fix the draft`, [
          reasonOf(error),
        ]),
      );
    }
  }

  /** Waits until every commit made so far has settled and its files exist; the writer stays open. */
  async flush(): Promise<void> {
    // Commits settle in order and each batch's files are queued as it settles, so the last one covers all.
    await this.#commits.lastCommit.catch(() => {});
    await this.#materializer.flush();
  }

  /** Waits for every commit and every file to be written, then closes the WAL; rejects if files are missing. */
  close(): Promise<void> {
    this.#closed = true;
    this.#materializer.markClosing();
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Whether commits are accepted now, and what waits for the disk (for `/readyz` and admission). */
  health(): EdrWriterHealth {
    return { ...this.#repair.snapshot(), files_waiting_retry: this.#materializer.waitingRetryCount() };
  }

  /** Resolves once commits are accepted again after a disk error (at once when they are). */
  untilHealthy(): Promise<void> {
    return this.#repair.untilOk();
  }

  /** Each UTC day's (`YYYY-MM-DD`) durable chain head: its sequence and `edr_hash` (a copy, read-only). */
  heads(): Map<string, { sequence: number; edrHash: string }> {
    return new Map([...this.#durable].map(([day, head]) => [day, { ...head }]));
  }

  /** Counters since `open()`, including what recovery repaired. */
  stats(): EdrWriterStats {
    const commits = this.#commits.stats;
    return {
      ...commits,
      rejected: commits.rejected + this.#sealRejected,
      ...this.#materializer.stats,
      pending_wal: this.#commits.pending,
      pending_materialize: this.#materializer.pendingCount(),
      broken: this.#repair.degraded,
      recovery: { ...this.#recovery! },
    };
  }

  #seal(draft: EdrDraft, options: EdrCommitOptions): Promise<EdrRecord> {
    const day = edrDay(draft.timestamp);
    const captured = captureInput(draft, options.capturedInput, options.capturedInputCanonical);
    // Sequence and prev hash are taken synchronously: JS runs one commit at a time, so this is the order.
    const head = this.#heads.get(day);
    const sequence = head ? head.sequence + 1 : 1;
    const { record, text } = sealDraft(captured.draft, sequence, head ? head.edrHash : null);
    if (this.#validate) {
      const result = validateEdr(record);
      if (!result.valid) {
        throw new EdrValidationError(
          `edr record is not valid EDR_v1.0.0 (${result.errors.slice(0, 3).join("; ")}); fix the draft`,
          result.errors,
        );
      }
    }
    this.#heads.set(day, { sequence, edrHash: record.edr_hash });
    return this.#commits.enqueue(day, record, text, captured.input);
  }

  /** Notes the files a durable batch still needs; the worker reads their lines back from the WAL. */
  #materializeLater(batch: Pending[]): void {
    const counts = new Map<string, number>();
    for (const p of batch) counts.set(p.day, (counts.get(p.day) ?? 0) + 1);
    // The batch's logs were just appended to, so they are open and end after its lines.
    for (const [day, count] of counts) this.#materializer.addDurable(day, this.#wal.endOf(day), count);
    this.#materializer.scheduleFiles();
  }

  #onBatchFailed(error: unknown, records: number): EdrWriteError {
    this.#heads = new Map(this.#durable);
    this.#log({ level: "error", msg: "edr wal write failed", reason: reasonOf(error), records });
    this.#repair.degrade(reasonOf(error));
    return error instanceof EdrWriteError ? error : new EdrWriteError(
      `edr write-ahead log write failed (${reasonOf(error)}); check disk space and permissions`,
      { cause: error },
    );
  }

  async #close(): Promise<void> {
    await this.#commits.idle();
    await this.#materializer.close(() => this.#repair.repairNow(), () => this.#repair.stop());
    this.#wal.close();
    const missing = this.#materializer.waitingRetryCount();
    if (missing > 0) {
      throw new EdrWriteError(
        `${missing} edr files could not be written (${this.#materializer.retryReason}); their records are ` +
          `durable in ${this.#dir}/wal and the next start writes them`,
      );
    }
  }
}
