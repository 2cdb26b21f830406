/**
 * The per-UTC-day write-ahead log files: opening a day's log where its durable end is, appending a batch
 * (a synchronous page-cache copy) and syncing it, keeping zeros written ahead of the end, cutting a failed
 * batch back off, repairing after a disk error, and closing. What goes into a batch and when is
 * `group_commit.ts`'s; where a day's durable end is at start is `recovery.ts`'s.
 */

import { syncDir } from "./atomic_file.ts";
import { type EdrLogEvent, EdrWriteError, reasonOf, remedyFor } from "./errors.ts";
import { walPathOn } from "./paths.ts";

interface WalHandle {
  file: Deno.FsFile;
  /** Where the log ends: the next line is written here (the file's position). */
  size: number;
  /** The file's length: past `size` it holds zeros written ahead (see `#zeroAhead`). */
  allocated: number;
}

/** Options of a `WalLog`. */
export interface WalLogOptions {
  /**
   * Keep zeros written ahead of each log's end (default true). False is the plain twin: every batch
   * grows the file. Both leave the same log once closed; tests/edr/wal_log_test.ts holds them equal and
   * bench/edr_writer_bench.ts compares them.
   */
  zeroAhead?: boolean;
  /** Called when a day's log is opened, with the offset it ends at. */
  onOpen?: (day: string, size: number) => void;
}

/** How far ahead of the log's end zeros are kept written, and how much is added at a time. */
const ZERO_AHEAD_BYTES = 2 * 1024 * 1024;
const ZEROS = new Uint8Array(256 * 1024);

/**
 * Appends synchronously: a WAL batch is a memory copy into the page cache (microseconds), while an async
 * write is a round trip through the blocking thread pool that, on a busy core, waits to be scheduled.
 * The fdatasync that follows stays asynchronous, so the event loop keeps serving while the disk works.
 */
function writeAll(file: Deno.FsFile, bytes: Uint8Array): void {
  let offset = 0;
  while (offset < bytes.length) offset += file.writeSync(bytes.subarray(offset));
}

/** The WAL files of one artifacts directory. */
export class WalLog {
  readonly #dir: string;
  readonly #log: (event: EdrLogEvent) => void;
  readonly #zeroAheadOn: boolean;
  readonly #onOpen: (day: string, size: number) => void;
  #handles = new Map<string, WalHandle>();
  /** Where each log ends, as recovery found it or as its handle left it when closed. */
  #ends = new Map<string, number>();
  /** Days whose log may hold bytes of a failed batch past its durable end, to be cut by the repair. */
  #toRepair = new Set<string>();

  /** The logs under `dir/wal`; nothing is opened until a batch needs it. */
  constructor(dir: string, log: (event: EdrLogEvent) => void, options: WalLogOptions = {}) {
    this.#dir = dir;
    this.#log = log;
    this.#zeroAheadOn = options.zeroAhead ?? true;
    this.#onOpen = options.onOpen ?? (() => {});
  }

  /** Notes where a day's log ends (recovery found it there); the next append starts at that offset. */
  setEnd(day: string, end: number): void {
    this.#ends.set(day, end);
  }

  /** Where a day's open log ends now (after the last appended batch). */
  endOf(day: string): number {
    return this.#handles.get(day)!.size;
  }

  /**
   * Writes each day's bytes at its log's end and syncs them (`blockingSync`: on the calling thread).
   * On failure the batch is cut back off every log it reached, and the error is rethrown.
   */
  async append(byDay: Map<string, { view(): Uint8Array }>, blockingSync: boolean): Promise<void> {
    this.#closeIdle(byDay);
    const written: Array<{ day: string; handle: WalHandle; before: number }> = [];
    try {
      for (const [day, builder] of byDay) {
        const handle = this.#handles.get(day) ?? await this.#open(day);
        const bytes = builder.view();
        written.push({ day, handle, before: handle.size });
        writeAll(handle.file, bytes);
        handle.size += bytes.length;
        if (this.#zeroAheadOn) this.#zeroAhead(handle);
        if (blockingSync) handle.file.syncDataSync();
        else await handle.file.syncData();
      }
    } catch (error) {
      await this.#rollback(written, error);
      throw error;
    }
  }

  /**
   * Makes the log writable again after a failed write: cuts bytes of a failed batch off each log that
   * may still hold them, then proves the disk takes data again by writing the zeros ahead of today's log
   * and syncing them. Throws while the disk still fails; the repair loop tries again later.
   */
  async repair(): Promise<void> {
    const today = new Date().toISOString().slice(0, 10);
    for (const day of new Set([...this.#toRepair, today])) {
      let handle: WalHandle | undefined;
      try {
        handle = this.#handles.get(day) ?? await this.#open(day);
        if (this.#toRepair.has(day)) {
          await handle.file.truncate(handle.size);
          handle.allocated = handle.size;
          handle.file.seekSync(handle.size, Deno.SeekMode.Start);
        }
        if (day === today && this.#zeroAheadOn) this.#zeroAhead(handle);
        await handle.file.syncData();
        this.#toRepair.delete(day);
      } catch (error) {
        // A half-written handle's position is unknown: drop it, and cut its log back to its durable end
        // (kept in #ends, where #open looks) at the next try.
        if (handle) this.#drop(day, handle);
        throw error;
      }
    }
  }

  /** Closes every log, cutting its zeros off. */
  close(): void {
    for (const [day, handle] of this.#handles) this.#closeOne(day, handle);
    this.#handles.clear();
  }

  #drop(day: string, handle: WalHandle): void {
    this.#ends.set(day, handle.size);
    try {
      handle.file.close();
    } catch { /* already closed */ }
    this.#handles.delete(day);
    this.#toRepair.add(day);
  }

  /**
   * Keeps zeros written past the log's end. A line that overwrites blocks the file already has changes no
   * metadata, so its fdatasync is one data write instead of a data write plus a journal commit (the
   * saving is measured in docs/performance.md). The zeros are made durable by the same fdatasync as the
   * batch that added them. Recovery treats the first NUL byte as the end of the log (canonical JSON never
   * contains one), and closing the log cuts the zeros off.
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
  #closeOne(day: string, handle: WalHandle): void {
    this.#ends.set(day, handle.size);
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
        // The repair loop cuts the failed batch off once the disk lets it (see repair()).
        this.#log({
          level: "error",
          msg: "edr wal not cut back after a failed write; retrying",
          reason: reasonOf(error),
          day,
          cause: reasonOf(cause),
        });
        handle.size = before;
        this.#drop(day, handle);
      }
    }
  }

  /** Past midnight a batch holds only the new day: the logs it does not write to are closed. */
  #closeIdle(inUse: Map<string, unknown>): void {
    if (this.#handles.size < 2) return;
    for (const [day, handle] of this.#handles) {
      if (inUse.has(day)) continue;
      this.#closeOne(day, handle);
      this.#handles.delete(day);
    }
  }

  async #open(day: string): Promise<WalHandle> {
    const path = walPathOn(this.#dir, day);
    let file: Deno.FsFile;
    try {
      // Not append mode: lines overwrite the zeros written ahead of them (see #zeroAhead).
      file = await Deno.open(path, { read: true, write: true, create: true });
    } catch (error) {
      throw new EdrWriteError(
        `cannot open edr write-ahead log ${path} (${reasonOf(error)}); ${remedyFor(error, this.#dir)}`,
        { cause: error },
      );
    }
    let size: number;
    let allocated: number;
    try {
      allocated = (await file.stat()).size;
      // A log this writer closed or recovered ends where it said; zeros it could not trim may follow.
      size = Math.min(this.#ends.get(day) ?? allocated, allocated);
      // A new log's directory entry must be durable too, or a crash could lose the whole file.
      if (allocated === 0) await syncDir(`${this.#dir}/wal`);
      file.seekSync(size, Deno.SeekMode.Start);
    } catch (error) {
      file.close();
      throw error;
    }
    const handle = { file, size, allocated };
    this.#handles.set(day, handle);
    this.#onOpen(day, size);
    return handle;
  }
}
