/**
 * The durable EDR writer. Every record is appended to a per-UTC-day write-ahead log and made durable by
 * group commit: one writer loop takes everything committed while the previous write+fdatasync ran and
 * makes it durable with a single write and a single fdatasync. Only then do the commits resolve. The
 * per-request files under `edr/` are materialized afterwards (atomically, without fsync) because the
 * WAL is the durable copy; `open()` replays the WAL to restore anything a crash left out.
 */

import { canonicalJson, sha256Hex } from "./canonical.ts";
import { computeEdrHash, edrDay, sealDraft } from "./hashes.ts";
import type { MaterializeReply, MaterializeRequest } from "./materializer_protocol.ts";
import { inputHashOfPointer, inputPointerOf, walPathOn } from "./paths.ts";
import { scanWalLines } from "./wal_scan.ts";
import { Utf8Builder } from "./utf8_builder.ts";
import { validateEdr } from "./schema.ts";
import { type EdrWriterHealth, RepairLoop } from "./writer_health.ts";
import type { EdrDraft, EdrRecord } from "./types.ts";

/** A record could not be made durable (disk full, permissions, I/O error); the request should fail closed. */
export class EdrWriteError extends Error {
  /** Builds the error; `cause` carries the underlying I/O error. */
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = "EdrWriteError";
  }
}

/** The writer is degraded (the disk failed and is not repaired yet): the commit was refused at once. */
export class EdrUnavailableError extends EdrWriteError {
  /** Builds the error from the reason the writer is degraded. */
  constructor(reason: string) {
    super(
      `the edr write-ahead log cannot be written now (${reason}); the router retries by itself, retry later`,
    );
    this.name = "EdrUnavailableError";
  }
}

/** A draft did not produce a valid EDR_v1.0.0 record; nothing was written and no sequence was used. */
export class EdrValidationError extends EdrWriteError {
  /** Schema problems as `<json pointer> <message>` lines. */
  readonly errors: string[];

  /** Builds the error from the validator's messages. */
  constructor(message: string, errors: string[]) {
    super(message);
    this.name = "EdrValidationError";
    this.errors = errors;
  }
}

/** A structured log event from the writer (reasons and paths only, never record bodies or prompts). */
export type EdrLogEvent = { level: "warn" | "error"; msg: string } & Record<string, unknown>;

/** Options for `EdrWriter.open`. */
export interface EdrWriterOptions {
  /** Validate every record against the schema before it is enqueued (default true). */
  validate?: boolean;
  /** Where warnings and errors go; defaults to one JSON line on stderr. */
  log?: (event: EdrLogEvent) => void;
  /**
   * Most durable records allowed to wait for their per-request file (default 20000). Beyond it the WAL
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
  /** Most durable records that may wait for a quiet moment before their files are written (default 32768). */
  maxDeferred?: number;
  /**
   * True when no request is in flight besides those waiting on the WAL. A lone record's fdatasync then
   * runs on the calling thread: it stalls the event loop, which has nothing else to do, and skips the
   * round trip through the blocking thread pool (0.1 to 0.2 ms of p50 at one connection on this
   * machine). Default: never.
   */
  eventLoopIdle?: () => boolean;
}

/** Options for `EdrWriter.commit`. */
export interface EdrCommitOptions {
  /** The request's input, kept at `inputs/<sha256>.json` and pointed to by `replay.required_inputs_pointer`. */
  capturedInput?: unknown;
  /** The same input already in RFC 8785 form with its SHA-256 (the caller hashed it anyway); wins over `capturedInput`. */
  capturedInputCanonical?: { text: string; hash: string };
}

/** What `open()` found and repaired in the write-ahead log. */
export interface EdrRecoveryStats {
  wal_files: number;
  /** Past days taken from their check marker instead of being read again (see `#trustCheckedDay`). */
  days_trusted: number;
  records: number;
  files_restored: number;
  inputs_restored: number;
  /** Of the restored files and inputs, how many replaced a file of the wrong size. */
  files_repaired: number;
  torn_tails: number;
  corrupt_lines: number;
  chain_breaks: number;
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

interface ChainHead {
  sequence: number;
  edrHash: string;
}

/** `wal/<day>.checked.json`: what the last clean full check of a finished day's log found. */
interface DayCheckMarker {
  wal_bytes: number;
  records: number;
  head: ChainHead | null;
}

/** A sealed record whose WAL line is already encoded into the filling batch, waiting for its fdatasync. */
interface Pending {
  day: string;
  record: EdrRecord;
  resolve: (record: EdrRecord) => void;
  reject: (error: unknown) => void;
}

/**
 * Durable WAL lines of one day whose files are not yet asked for: `count` records from the day's
 * `#postedTo` offset up to `end`.
 */
interface UnpostedRange {
  end: number;
  count: number;
}

interface WalHandle {
  file: Deno.FsFile;
  /** Where the log ends: the next line is written here (the file's position). */
  size: number;
  /** The file's length: past `size` it holds zeros written ahead (see `#zeroAhead`). */
  allocated: number;
}

const WAL_NAME = /^(\d{4}-\d{2}-\d{2})\.log$/;
const MAX_REMEMBERED_INPUTS = 100_000;
/** How far ahead of the log's end zeros are kept written, and how much is added at a time. */
const ZERO_AHEAD_BYTES = 2 * 1024 * 1024;
const ZEROS = new Uint8Array(256 * 1024);
const RESTORE_CHUNK_LINES = 4096;
/** How old every file of a past day must be before a clean check of that day is recorded. */
const CHECKED_FILES_MIN_AGE_MS = 10 * 60_000;
/** Lone batches in a row that count as serving one request at a time (see `#servingOneAtATime`). */
const SOLO_BATCHES_BEFORE_BLOCKING = 32;
const encoder = new TextEncoder();
const decoder = new TextDecoder();

function defaultLog(event: EdrLogEvent): void {
  console.error(JSON.stringify({ component: "edr", ...event }));
}

function reasonOf(error: unknown): string {
  return error instanceof Error ? `${error.name}: ${error.message}` : String(error);
}

/** What to do about a file-system error under `dir`, by its kind (a message says its cause first). */
export function remedyFor(error: unknown, dir: string): string {
  const text = reasonOf(error);
  if (/NotCapable|Requires (read|write) access/.test(text)) {
    return `the process lacks a Deno permission for it; start the router with deno task serve, which grants ${dir}`;
  }
  if (/os error 28|No space left/i.test(text)) return `free space on the file system that holds ${dir}`;
  if (/os error 30|Read-only file system/i.test(text)) return `remount the file system of ${dir} read-write`;
  if (/os error 1[^0-9]|os error 13|Permission denied|PermissionDenied|Operation not permitted/i.test(text)) {
    return `make ${dir} and everything in it writable by this user (check chattr +i as well)`;
  }
  if (/os error 5[^0-9]|Input\/output error/i.test(text)) {
    return `check the disk that holds ${dir} (it reported an I/O error)`;
  }
  return `check ${dir} and the disk that holds it`;
}

/**
 * Appends synchronously: a WAL batch is a memory copy into the page cache (microseconds), while an async
 * write is a round trip through the blocking thread pool that, on a busy core, waits to be scheduled.
 * The fdatasync that follows stays asynchronous, so the event loop keeps serving while the disk works.
 */
function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

async function syncDir(path: string): Promise<void> {
  const dir = await Deno.open(path, { read: true });
  try {
    await dir.sync();
  } finally {
    dir.close();
  }
}

let tmpCounter = 0;

/**
 * Creates `path` with `text` so that readers see either nothing or the whole file, and never replaces an
 * existing file: the text goes to a temp name in `tmpDir` (same file system) and is hard-linked into place.
 */
async function createAtomically(
  tmpDir: string,
  path: string,
  text: string,
  options: { durable?: boolean } = {},
): Promise<boolean> {
  const tmp = `${tmpDir}/${Deno.pid}-${++tmpCounter}.part`;
  try {
    if (options.durable) {
      const file = await Deno.open(tmp, { write: true, createNew: true });
      try {
        await writeAll(file, encoder.encode(text));
        await file.sync();
      } finally {
        file.close();
      }
    } else {
      await Deno.writeTextFile(tmp, text, { createNew: true });
    }
    try {
      await Deno.link(tmp, path);
      return true;
    } catch (error) {
      if (error instanceof Deno.errors.AlreadyExists) return false;
      // Some file systems refuse hard links; a checked rename is the next best thing.
      if (await exists(path)) return false;
      await Deno.rename(tmp, path);
      return true;
    }
  } finally {
    await Deno.remove(tmp).catch(() => {});
  }
}

/** The durable, chained EDR writer for one artifacts directory (one writer per directory at a time). */
export class EdrWriter {
  readonly #dir: string;
  readonly #validate: boolean;
  readonly #log: (event: EdrLogEvent) => void;
  readonly #maxBacklog: number;
  #heads = new Map<string, ChainHead>();
  #durable = new Map<string, ChainHead>();
  #queue: Pending[] = [];
  #running = false;
  #loop: Promise<void> = Promise.resolve();
  #wal = new Map<string, WalHandle>();
  /** Where each log ends, as recovery found it or as its handle left it when closed. */
  #walEnds = new Map<string, number>();
  /** Degraded after a disk error, with the repair retried until the log can be written again. */
  #repair = new RepairLoop(() => this.#repairWal(), () => this.#onRepaired());
  /** Days whose log may hold bytes of a failed batch past its durable end, to be cut by the repair. */
  #walToRepair = new Set<string>();
  /** Files of durable records that failed to materialize, posted again once the disk is back. */
  #retryFiles: Array<{ day: string; start: number; end: number; count: number }> = [];
  #fileRepair = new RepairLoop(() => this.#retryFileJobs(), () => {
    this.#log({ level: "warn", msg: "edr files written after an earlier failure" });
  });
  #closed = false;
  #closing: Promise<void> | null = null;
  #worker: Worker | null = null;
  #nextJobId = 0;
  readonly #idleMs: number;
  readonly #maxDeferred: number;
  readonly #eventLoopIdle: () => boolean;
  /** `#stats.batches` when a record last arrived during another's write, or a batch had company. */
  #concurrentAtBatch = 0;
  /** Per day, the durable WAL lines whose files have not been asked of the worker yet. */
  #unposted = new Map<string, UnpostedRange>();
  /** Per day, the WAL offset up to which files were asked for (or restored at open). */
  #postedTo = new Map<string, number>();
  /**
   * Per day, the WAL lines of the records in `#queue`, encoded as each record is sealed: its text is
   * dropped at once instead of surviving on the heap until its batch is written.
   */
  #filling = new Map<string, Utf8Builder>();
  /** Emptied builders, reused for the next batches. */
  #spareBuffers: Utf8Builder[] = [];
  #idleTimer: ReturnType<typeof setTimeout> | null = null;
  #lastDurableAt = 0;
  #inflight = new Map<number, { count: number; resolve: (reply: MaterializeReply) => void }>();
  #backlogCount = 0;
  #idleWaiters: Array<() => void> = [];
  #flushWaiters: Array<{ id: number; wake: () => void }> = [];
  #lastCommit: Promise<unknown> = Promise.resolve();
  #backlogWaiter: (() => void) | null = null;
  /** Inputs some WAL line already carries (so later lines for the same input leave it out). */
  #walInputs = new Set<string>();
  #stats = {
    committed: 0,
    rejected: 0,
    batches: 0,
    blocking_syncs: 0,
    max_batch: 0,
    materialized: 0,
    materialize_errors: 0,
    inputs_written: 0,
  };
  #recovery: EdrRecoveryStats = {
    wal_files: 0,
    days_trusted: 0,
    records: 0,
    files_restored: 0,
    inputs_restored: 0,
    files_repaired: 0,
    torn_tails: 0,
    corrupt_lines: 0,
    chain_breaks: 0,
  };

  private constructor(dir: string, options: EdrWriterOptions) {
    this.#dir = dir.replace(/\/+$/, "") || "/";
    this.#validate = options.validate ?? true;
    this.#log = options.log ?? defaultLog;
    this.#maxBacklog = Math.max(1, options.maxMaterializeBacklog ?? 1_000_000);
    this.#idleMs = Math.max(0, options.materializeIdleMs ?? 200);
    this.#maxDeferred = Math.max(1, options.maxDeferred ?? 32_768);
    this.#eventLoopIdle = options.eventLoopIdle ?? (() => false);
  }

  /** Opens the writer: creates the layout, replays the WAL, restores missing files and continues each day's chain. */
  static async open(artifactsDir: string, options: EdrWriterOptions = {}): Promise<EdrWriter> {
    const writer = new EdrWriter(artifactsDir, options);
    try {
      await writer.#recover();
    } catch (error) {
      writer.#worker?.terminate();
      if (error instanceof EdrWriteError) throw error;
      throw new EdrWriteError(
        `cannot recover the edr write-ahead log (${reasonOf(error)}); ${remedyFor(error, artifactsDir)}`,
        {
          cause: error,
        },
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
    let pending: Pending;
    const done = Promise.withResolvers<EdrRecord>();
    try {
      pending = this.#seal(draft, options, done.resolve, done.reject);
    } catch (error) {
      this.#stats.rejected++;
      if (error instanceof EdrWriteError) return Promise.reject(error);
      return Promise.reject(
        new EdrValidationError(`edr draft cannot be sealed (${reasonOf(error)}); fix the draft`, [
          reasonOf(error),
        ]),
      );
    }
    this.#queue.push(pending);
    this.#lastCommit = done.promise;
    if (this.#running) this.#concurrentAtBatch = this.#stats.batches;
    if (!this.#running) {
      this.#running = true;
      this.#loop = this.#run();
    }
    return done.promise;
  }

  /** Waits until every commit made so far has settled and its files exist; the writer stays open. */
  async flush(): Promise<void> {
    // Commits settle in order and each batch's files are queued as it settles, so the last one covers all.
    await this.#lastCommit.catch(() => {});
    this.#postDeferred();
    const target = this.#nextJobId;
    if (!this.#hasInflightUpTo(target)) return;
    await new Promise<void>((wake) => this.#flushWaiters.push({ id: target, wake }));
  }

  /** Waits for every commit and every file to be written, then closes the WAL; rejects if files are missing. */
  close(): Promise<void> {
    this.#closed = true;
    this.#closing ??= this.#close();
    return this.#closing;
  }

  /** Whether commits are accepted now, and what waits for the disk (for `/readyz` and admission). */
  health(): EdrWriterHealth {
    return { ...this.#repair.snapshot(), files_waiting_retry: this.#waitingRetryCount() };
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
    return {
      ...this.#stats,
      pending_wal: this.#queue.length,
      pending_materialize: this.#backlog() + this.#deferredCount(),
      broken: this.#repair.degraded,
      recovery: { ...this.#recovery },
    };
  }

  #seal(
    draft: EdrDraft,
    options: EdrCommitOptions,
    resolve: (record: EdrRecord) => void,
    reject: (error: unknown) => void,
  ): Pending {
    const day = edrDay(draft.timestamp);
    let inputText: string | null = null;
    let inputHash: string | null = null;
    let source = draft;
    if (options.capturedInputCanonical !== undefined) {
      inputText = options.capturedInputCanonical.text;
      inputHash = options.capturedInputCanonical.hash;
      source = { ...draft, replay: { ...draft.replay, required_inputs_pointer: inputPointerOf(inputHash) } };
    } else if (options.capturedInput !== undefined) {
      inputText = canonicalJson(options.capturedInput);
      inputHash = sha256Hex(inputText);
      source = { ...draft, replay: { ...draft.replay, required_inputs_pointer: inputPointerOf(inputHash) } };
    }
    // Sequence and prev hash are taken synchronously: JS runs one commit at a time, so this is the order.
    const head = this.#heads.get(day);
    const sequence = head ? head.sequence + 1 : 1;
    const { record, text } = sealDraft(source, sequence, head ? head.edrHash : null);
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
    this.#encodeLine(day, text, inputText, inputHash);
    return { day, record, resolve, reject };
  }

  /** Appends a record's WAL line to the filling batch of its day. */
  #encodeLine(day: string, text: string, inputText: string | null, inputHash: string | null): void {
    let bytes = this.#filling.get(day);
    if (!bytes) {
      bytes = this.#spareBuffers.pop()?.reset() ?? new Utf8Builder();
      this.#filling.set(day, bytes);
    }
    // An input already in the log is durable there (or will be with an earlier line); repeating it would
    // only grow the log and the sync.
    if (inputText !== null && !this.#walInputs.has(inputHash!)) {
      this.#rememberWalInput(inputHash!);
      bytes.append('{"input":');
      bytes.append(inputText);
      bytes.append(',"record":');
    } else {
      bytes.append('{"record":');
    }
    bytes.append(text);
    bytes.append("}\n");
  }

  /**
   * Whether a blocking fdatasync is free: this batch is the only work in flight and, for the last
   * `SOLO_BATCHES_BEFORE_BLOCKING` batches, no record arrived while another was being written. Under any
   * concurrency, requests not yet seen by the handler would wait behind the sync instead of overlapping it.
   * Never right after a batch in the same run: blocking would hold back the responses it just released.
   */
  #servingOneAtATime(batchSize: number): boolean {
    if (batchSize !== 1 || !this.#eventLoopIdle()) {
      this.#concurrentAtBatch = this.#stats.batches;
      return false;
    }
    return this.#stats.batches - this.#concurrentAtBatch >= SOLO_BATCHES_BEFORE_BLOCKING;
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
        if (this.#backlog() > this.#maxBacklog) {
          await new Promise<void>((wake) => this.#backlogWaiter = wake);
        }
        const batch = this.#queue;
        this.#queue = [];
        const lines = this.#takeFilling();
        const blockingSync = firstBatch && this.#servingOneAtATime(batch.length);
        firstBatch = false;
        try {
          await this.#append(lines, blockingSync);
        } catch (error) {
          this.#fail(batch, error);
          continue;
        } finally {
          this.#recycle(lines);
        }
        this.#stats.batches++;
        this.#stats.committed += batch.length;
        if (batch.length > this.#stats.max_batch) this.#stats.max_batch = batch.length;
        for (const p of batch) {
          this.#durable.set(p.day, { sequence: p.record.sequence, edrHash: p.record.edr_hash });
        }
        for (const p of batch) p.resolve(p.record);
        this.#materializeLater(batch);
      }
    } finally {
      this.#running = false;
    }
  }

  #fail(batch: Pending[], error: unknown): void {
    // Records queued behind the failed batch chain onto it, so they fail too; the chain restarts from the
    // last durable record, which keeps sequences gap-free.
    const rest = this.#queue;
    this.#queue = [];
    this.#recycle(this.#takeFilling());
    this.#heads = new Map(this.#durable);
    // Inputs of the lost lines may have been counted as logged; forgetting all only repeats some later.
    this.#walInputs.clear();
    const failure = error instanceof EdrWriteError ? error : new EdrWriteError(
      `edr write-ahead log write failed (${reasonOf(error)}); check disk space and permissions`,
      {
        cause: error,
      },
    );
    this.#log({
      level: "error",
      msg: "edr wal write failed",
      reason: reasonOf(error),
      records: batch.length + rest.length,
    });
    this.#stats.rejected += batch.length + rest.length;
    this.#repair.degrade(reasonOf(error));
    for (const p of batch) p.reject(failure);
    for (const p of rest) p.reject(failure);
  }

  async #append(byDay: Map<string, Utf8Builder>, blockingSync: boolean): Promise<void> {
    this.#closeIdleWal(byDay);
    const written: Array<{ day: string; handle: WalHandle; before: number }> = [];
    try {
      for (const [day, builder] of byDay) {
        const handle = this.#wal.get(day) ?? await this.#openWal(day);
        const bytes = builder.view();
        written.push({ day, handle, before: handle.size });
        writeAll(handle.file, bytes);
        handle.size += bytes.length;
        this.#zeroAhead(handle);
        if (blockingSync) {
          handle.file.syncDataSync();
          this.#stats.blocking_syncs++;
        } else {
          await handle.file.syncData();
        }
      }
    } catch (error) {
      await this.#rollback(written, error);
      throw error;
    }
  }

  #rememberWalInput(hash: string): void {
    // Bounded: forgetting only means a later line repeats an input the WAL already has.
    if (this.#walInputs.size >= MAX_REMEMBERED_INPUTS) this.#walInputs.clear();
    this.#walInputs.add(hash);
  }

  /**
   * Keeps zeros written past the log's end. A line that overwrites blocks the file already has changes no
   * metadata, so its fdatasync is one data write instead of a data write plus a journal commit (about a
   * quarter less latency and a third less kernel CPU per sync on this machine's ext4 disk). The zeros are
   * made durable by the same fdatasync as the batch that added them. Recovery treats the first NUL byte as
   * the end of the log (canonical JSON never contains one), and closing the log cuts the zeros off.
   */
  #zeroAhead(handle: WalHandle): void {
    if (handle.allocated - handle.size >= ZERO_AHEAD_BYTES / 2) return;
    // A batch larger than the zeros left runs past them; the new zeros then start at its end.
    const from = Math.max(handle.allocated, handle.size);
    handle.file.seekSync(from, Deno.SeekMode.Start);
    for (let at = from; at < from + ZERO_AHEAD_BYTES; at += ZEROS.length) writeAll(handle.file, ZEROS);
    handle.allocated = from + ZERO_AHEAD_BYTES;
    handle.file.seekSync(handle.size, Deno.SeekMode.Start);
  }

  /** Cuts a log's zeros off and closes it, so a log no writer holds ends at its last line. */
  #closeWal(day: string, handle: WalHandle): void {
    this.#walEnds.set(day, handle.size);
    try {
      if (handle.allocated > handle.size) handle.file.truncateSync(handle.size);
    } catch (error) {
      // Harmless: recovery reads the log up to its first NUL byte.
      this.#log({ level: "warn", msg: "edr wal zeros not trimmed", reason: reasonOf(error) });
    }
    handle.file.close();
  }

  async #rollback(
    written: Array<{ day: string; handle: WalHandle; before: number }>,
    cause: unknown,
  ): Promise<void> {
    // Rejected records must not come back at recovery, so cut them off the log again.
    for (const { day, handle, before } of written) {
      try {
        await handle.file.truncate(before);
        await handle.file.syncData();
        handle.size = before;
        handle.allocated = before;
        handle.file.seekSync(before, Deno.SeekMode.Start);
      } catch (error) {
        // The repair loop cuts the failed batch off once the disk lets it (see #repairWal).
        this.#log({
          level: "error",
          msg: "edr wal not cut back after a failed write; retrying",
          reason: reasonOf(error),
          day,
          cause: reasonOf(cause),
        });
        handle.size = before;
        this.#walEnds.set(day, before);
        this.#walToRepair.add(day);
        try {
          handle.file.close();
        } catch { /* already closed */ }
        this.#wal.delete(day);
      }
    }
  }

  #closeIdleWal(inUse: Map<string, unknown>): void {
    if (this.#wal.size < 2) return;
    for (const [day, handle] of this.#wal) {
      if (inUse.has(day)) continue;
      this.#closeWal(day, handle);
      this.#wal.delete(day);
    }
  }

  async #openWal(day: string): Promise<WalHandle> {
    const path = this.#walPath(day);
    let file: Deno.FsFile;
    try {
      // Not append mode: lines overwrite the zeros written ahead of them (see #zeroAhead).
      file = await Deno.open(path, { read: true, write: true, create: true });
    } catch (error) {
      throw new EdrWriteError(
        `cannot open edr write-ahead log ${path} (${reasonOf(error)}); ${remedyFor(error, this.#dir)}`,
        {
          cause: error,
        },
      );
    }
    let size: number;
    let allocated: number;
    try {
      allocated = (await file.stat()).size;
      // A log this writer closed or recovered ends where it said; zeros it could not trim may follow.
      size = Math.min(this.#walEnds.get(day) ?? allocated, allocated);
      // A new log's directory entry must be durable too, or a crash could lose the whole file.
      if (allocated === 0) await syncDir(`${this.#dir}/wal`);
      file.seekSync(size, Deno.SeekMode.Start);
    } catch (error) {
      file.close();
      throw error;
    }
    const handle = { file, size, allocated };
    this.#wal.set(day, handle);
    // Lines already in the file were restored by open() or asked for before the handle was last closed.
    if (!this.#postedTo.has(day)) this.#postedTo.set(day, size);
    return handle;
  }

  #backlog(): number {
    return this.#backlogCount;
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
    if (this.#backlogWaiter && this.#backlogCount <= this.#maxBacklog) {
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
    this.#worker?.terminate();
    this.#worker = null;
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

  /** Notes the files a durable batch still needs; the worker reads their lines back from the WAL. */
  #materializeLater(batch: Pending[]): void {
    for (const p of batch) {
      let range = this.#unposted.get(p.day);
      if (!range) this.#unposted.set(p.day, range = { end: 0, count: 0 });
      range.count++;
      // The batch's logs were just appended to, so they are open and end after its lines.
      range.end = this.#wal.get(p.day)!.size;
    }
    if (this.#idleMs === 0 || this.#closed) {
      this.#postDeferred();
      return;
    }
    this.#lastDurableAt = performance.now();
    if (this.#deferredCount() >= this.#maxDeferred) this.#postDeferred();
    else if (this.#idleTimer === null) this.#scheduleIdleCheck(this.#idleMs);
  }

  #scheduleIdleCheck(delay: number): void {
    const timer = setTimeout(() => {
      this.#idleTimer = null;
      const quiet = performance.now() - this.#lastDurableAt;
      if (quiet >= this.#idleMs) this.#postDeferred();
      else this.#scheduleIdleCheck(this.#idleMs - quiet);
    }, delay);
    // The timer must never keep a process alive; close() and flush() write what is waiting.
    Deno.unrefTimer(timer);
    this.#idleTimer = timer;
  }

  #postDeferred(): void {
    if (this.#idleTimer !== null) {
      clearTimeout(this.#idleTimer);
      this.#idleTimer = null;
    }
    const ranges = this.#unposted;
    this.#unposted = new Map();
    for (const [day, { end, count }] of ranges) {
      const start = this.#postedTo.get(day)!;
      this.#postedTo.set(day, end);
      const request = { day, start, end, lines: null, checkFirst: false };
      this.#post(request, count).then((reply) => {
        this.#countFiles(reply);
        if (reply.errors.length === 0) return;
        this.#log({
          level: "error",
          msg: "edr file materialization failed; the wal keeps the records and the writer retries",
          reason: reply.errors[0],
          failures: reply.errors.length,
        });
        this.#retryFiles.push({ day, start, end, count });
        this.#fileRepair.degrade(reply.errors[0]);
      });
    }
  }

  #countFiles(reply: MaterializeReply): void {
    this.#stats.materialized += reply.files;
    this.#stats.inputs_written += reply.inputs;
    this.#stats.materialize_errors += reply.errors.length;
  }

  /**
   * Asks again for the files that failed; a range is posted whole with `checkFirst`, so files made the
   * first time are kept and only the missing ones are written. Throws while any still fails.
   */
  async #retryFileJobs(): Promise<void> {
    const jobs = this.#retryFiles;
    this.#retryFiles = [];
    const failed: typeof jobs = [];
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

  #waitingRetryCount(): number {
    let count = 0;
    for (const job of this.#retryFiles) count += job.count;
    return count;
  }

  /**
   * Makes the log writable again after a failed write: cuts bytes of a failed batch off each log that
   * may still hold them, then proves the disk takes data again by writing the zeros ahead of today's log
   * and syncing them. Throws while the disk still fails; the repair loop tries again later.
   */
  async #repairWal(): Promise<void> {
    const today = new Date().toISOString().slice(0, 10);
    for (const day of new Set([...this.#walToRepair, today])) {
      let handle: WalHandle | undefined;
      try {
        handle = this.#wal.get(day) ?? await this.#openWal(day);
        if (this.#walToRepair.has(day)) {
          await handle.file.truncate(handle.size);
          handle.allocated = handle.size;
          handle.file.seekSync(handle.size, Deno.SeekMode.Start);
        }
        if (day === today) this.#zeroAhead(handle);
        await handle.file.syncData();
        this.#walToRepair.delete(day);
      } catch (error) {
        // A half-written handle's position is unknown: drop it, and cut its log back to its durable end
        // (kept in #walEnds, where #openWal looks) at the next try.
        if (handle) {
          this.#walEnds.set(day, handle.size);
          try {
            handle.file.close();
          } catch { /* already closed */ }
          this.#wal.delete(day);
          this.#walToRepair.add(day);
        }
        throw error;
      }
    }
  }

  #onRepaired(): void {
    this.#log({ level: "warn", msg: "edr wal writable again; commits accepted" });
    if (this.#retryFiles.length > 0) this.#fileRepair.degrade("retry after the wal repair");
  }

  /** Durable records whose files are not yet asked of the worker. */
  #deferredCount(): number {
    let count = 0;
    for (const range of this.#unposted.values()) count += range.count;
    return count;
  }

  #walPath(day: string): string {
    return walPathOn(this.#dir, day);
  }

  async #close(): Promise<void> {
    while (this.#running) await this.#loop;
    this.#postDeferred();
    if (this.#inflight.size > 0) await new Promise<void>((wake) => this.#idleWaiters.push(wake));
    // One last try for what a disk error held back, then no more retries.
    await this.#repair.repairNow();
    await this.#fileRepair.repairNow();
    await Promise.all([this.#repair.stop(), this.#fileRepair.stop()]);
    this.#worker?.terminate();
    this.#worker = null;
    for (const [day, handle] of this.#wal) this.#closeWal(day, handle);
    this.#wal.clear();
    const missing = this.#waitingRetryCount();
    if (missing > 0) {
      throw new EdrWriteError(
        `${missing} edr files could not be written (${this.#fileRepair.reason}); their records are durable in ` +
          `${this.#dir}/wal and the next start writes them`,
      );
    }
  }

  async #recover(): Promise<void> {
    try {
      for (const sub of ["wal", "edr", "inputs", "tmp"]) {
        await Deno.mkdir(`${this.#dir}/${sub}`, { recursive: true });
      }
      // Temp files are only ever half-made files of a crashed process.
      for await (const entry of Deno.readDir(`${this.#dir}/tmp`)) {
        await Deno.remove(`${this.#dir}/tmp/${entry.name}`, { recursive: true }).catch(() => {});
      }
    } catch (error) {
      throw new EdrWriteError(
        `cannot prepare edr artifacts dir ${this.#dir} (${reasonOf(error)}); ${remedyFor(error, this.#dir)}`,
        { cause: error },
      );
    }
    const names: string[] = [];
    for await (const entry of Deno.readDir(`${this.#dir}/wal`)) {
      if (entry.isFile && WAL_NAME.test(entry.name)) names.push(entry.name);
    }
    names.sort();
    const today = new Date().toISOString().slice(0, 10);
    for (const name of names) {
      const day = name.slice(0, 10);
      // Only a past day's log is finished; today's may still grow, so it is always read whole.
      if (day < today && await this.#trustCheckedDay(day)) continue;
      await this.#recoverWal(name, day < today);
    }
    this.#durable = new Map(this.#heads);
  }

  async #recoverWal(name: string, pastDay: boolean): Promise<void> {
    const day = name.slice(0, 10);
    const path = this.#walPath(day);
    this.#recovery.wal_files++;
    // Anything found wrong or restored keeps the day from being marked as checked.
    let dirty = false;
    // Verified lines go to the worker in chunks as the scan finds them, so files are restored while the
    // rest of the log is read; only line offsets are kept, never records.
    const replies: Promise<MaterializeReply>[] = [];
    let chunk: number[] = [];
    const postChunk = () => {
      if (chunk.length === 0) return;
      const request = {
        day,
        start: chunk[0],
        end: chunk[chunk.length - 1],
        lines: chunk,
        checkFirst: true,
      };
      replies.push(this.#post(request, chunk.length / 2));
      chunk = [];
    };
    let records = 0;
    let lineNo = 0;
    const onLine = (line: Uint8Array, start: number) => {
      lineNo++;
      const entry = this.#parseLine(line);
      if (!entry || edrDay(entry.record.timestamp) !== day) {
        dirty = true;
        this.#recovery.corrupt_lines++;
        this.#log({
          level: "warn",
          msg: "edr wal line skipped: not a valid record",
          wal: name,
          line: lineNo,
        });
        return;
      }
      const { record } = entry;
      records++;
      const head = this.#heads.get(day);
      const linked = head
        ? record.sequence === head.sequence + 1 && record.prev_edr_hash === head.edrHash
        : record.sequence === 1 && record.prev_edr_hash === null;
      if (!linked) {
        dirty = true;
        this.#recovery.chain_breaks++;
        this.#log({ level: "warn", msg: "edr wal chain break", wal: name, sequence: record.sequence });
      }
      this.#heads.set(day, { sequence: record.sequence, edrHash: record.edr_hash });
      // The line's input is stored under the hash its record points to.
      const pointer = record.replay?.required_inputs_pointer;
      if (entry.input !== undefined && pointer) {
        this.#rememberWalInput(inputHashOfPointer(pointer));
      }
      chunk.push(start, start + line.length);
      if (chunk.length >= RESTORE_CHUNK_LINES * 2) postChunk();
    };
    const { linesEnd, logEnd, fileSize } = await scanWalLines(path, onLine);
    postChunk();
    if (linesEnd < logEnd) {
      // The process died mid-append: that record was never acknowledged. Cut it so later appends start clean.
      dirty = true;
      this.#recovery.torn_tails++;
      this.#log({
        level: "warn",
        msg: "edr wal torn tail truncated",
        wal: name,
        bytes: logEnd - linesEnd,
      });
    }
    if (linesEnd < fileSize) {
      const file = await Deno.open(path, { write: true });
      try {
        await file.truncate(linesEnd);
        await file.syncData();
      } finally {
        file.close();
      }
    }
    this.#postedTo.set(day, linesEnd);
    this.#walEnds.set(day, linesEnd);
    this.#recovery.records += records;
    let newestFileMs = 0;
    for (const reply of await Promise.all(replies)) {
      this.#recovery.files_restored += reply.files;
      this.#recovery.inputs_restored += reply.inputs;
      this.#recovery.files_repaired += reply.repaired;
      newestFileMs = Math.max(newestFileMs, reply.newestFileMs);
      if (reply.files + reply.inputs > 0) dirty = true;
      if (reply.errors.length > 0) {
        throw new EdrWriteError(
          `cannot restore ${reply.errors.length} edr files from the wal (${reply.errors[0]}); ${
            remedyFor(reply.errors[0], this.#dir)
          }`,
        );
      }
    }
    // Files this young may still sit only in the page cache, so a power loss could take them after the check.
    if (pastDay && !dirty && newestFileMs <= Date.now() - CHECKED_FILES_MIN_AGE_MS) {
      const head = this.#heads.get(day) ?? null;
      await this.#markDayChecked(day, { wal_bytes: linesEnd, records, head });
    }
  }

  /**
   * A past day whose last full check found every line valid, the chain unbroken and every file in place
   * (and old enough to be on disk) is not read again while its log keeps the size the check saw: startup
   * then costs nothing per record of past days. `deno task verify` still checks the files themselves.
   */
  async #trustCheckedDay(day: string): Promise<boolean> {
    let marker: DayCheckMarker;
    let walBytes: number;
    try {
      marker = JSON.parse(await Deno.readTextFile(this.#checkedPath(day)));
      walBytes = (await Deno.stat(this.#walPath(day))).size;
    } catch {
      return false;
    }
    const head = marker?.head;
    const headValid = head === null ||
      (Number.isSafeInteger(head?.sequence) && typeof head?.edrHash === "string");
    if (marker?.wal_bytes !== walBytes || !Number.isSafeInteger(marker.records) || !headValid) return false;
    if (head) this.#heads.set(day, { sequence: head.sequence, edrHash: head.edrHash });
    this.#postedTo.set(day, walBytes);
    this.#walEnds.set(day, walBytes);
    this.#recovery.wal_files++;
    this.#recovery.days_trusted++;
    this.#recovery.records += marker.records;
    return true;
  }

  async #markDayChecked(day: string, marker: DayCheckMarker): Promise<void> {
    const path = this.#checkedPath(day);
    try {
      // A marker from an earlier size of the log no longer applies.
      await Deno.remove(path).catch(() => {});
      await createAtomically(`${this.#dir}/tmp`, path, JSON.stringify(marker) + "\n", { durable: true });
      await syncDir(`${this.#dir}/wal`);
    } catch (error) {
      // Harmless: the day is simply checked again at the next start.
      this.#log({ level: "warn", msg: "edr wal check marker not written", reason: reasonOf(error), day });
    }
  }

  #checkedPath(day: string): string {
    return `${this.#dir}/wal/${day}.checked.json`;
  }

  #parseLine(line: Uint8Array): { record: EdrRecord; input: unknown } | null {
    try {
      const parsed = JSON.parse(decoder.decode(line)) as { record?: EdrRecord; input?: unknown };
      const record = parsed.record;
      if (!record || typeof record !== "object" || typeof record.edr_hash !== "string") return null;
      if (computeEdrHash(record) !== record.edr_hash) return null;
      return { record, input: parsed.input };
    } catch {
      return null;
    }
  }
}

const writtenPolicies = new Set<string>();

/** Stores the canonical policy durably at `policies/<policy_hash>.json` (once per process) and returns the hash. */
export async function writePolicySnapshot(artifactsDir: string, policy: unknown): Promise<string> {
  const text = canonicalJson(policy);
  const hash = sha256Hex(text);
  const dir = `${artifactsDir.replace(/\/+$/, "") || "/"}/policies`;
  const key = `${dir}/${hash}`;
  if (writtenPolicies.has(key)) return hash;
  const path = `${dir}/${hash}.json`;
  try {
    await Deno.mkdir(dir, { recursive: true });
    let present = false;
    try {
      present = (await Deno.readTextFile(path)) === text;
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
    if (!present) {
      // A file under this name with other bytes is damaged: the name is the hash of the right bytes.
      await Deno.remove(path).catch(() => {});
      await createAtomically(dir, path, text, { durable: true });
      await syncDir(dir);
    }
  } catch (error) {
    throw new EdrWriteError(
      `cannot store policy snapshot ${path} (${reasonOf(error)}); ${remedyFor(error, artifactsDir)}`,
      {
        cause: error,
      },
    );
  }
  writtenPolicies.add(key);
  return hash;
}
