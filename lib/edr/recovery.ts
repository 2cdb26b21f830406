/**
 * What `EdrWriter.open()` does before the first commit: prepares the layout, empties `tmp/`, reads every
 * day's WAL up to its first NUL byte (verifying each line's `edr_hash` and the chain), cuts a torn tail,
 * has the worker restore missing or damaged files as verified lines are found, and records or trusts a
 * finished day's check marker. It hands back each day's chain head and where each log ends.
 */

import { AtomicFiles, syncDir } from "./atomic_file.ts";
import { type EdrLogEvent, EdrWriteError, reasonOf, remedyFor } from "./errors.ts";
import { computeEdrHash, edrDay } from "./hashes.ts";
import type { LoggedInputs } from "./inputs.ts";
import type { MaterializeReply } from "./materializer_protocol.ts";
import type { Materializer } from "./materializer.ts";
import { inputHashOfPointer, walPathOn } from "./paths.ts";
import type { EdrRecord } from "./types.ts";
import { scanWalLines } from "./wal_scan.ts";
import type { WalLog } from "./wal_log.ts";

/** A day's chain head: its last record's sequence and `edr_hash`. */
export interface ChainHead {
  sequence: number;
  edrHash: string;
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

/** `wal/<day>.checked.json`: what the last clean full check of a finished day's log found. */
interface DayCheckMarker {
  wal_bytes: number;
  records: number;
  head: ChainHead | null;
}

/** What recovery works with: the writer's parts it fills in. */
export interface RecoveryParts {
  dir: string;
  log: (event: EdrLogEvent) => void;
  wal: WalLog;
  materializer: Materializer;
  inputs: LoggedInputs;
}

const WAL_NAME = /^(\d{4}-\d{2}-\d{2})\.log$/;
const RESTORE_CHUNK_LINES = 4096;
/** How old every file of a past day must be before a clean check of that day is recorded. */
const CHECKED_FILES_MIN_AGE_MS = 10 * 60_000;
const decoder = new TextDecoder();

/** Recovers the artifacts directory; resolves with each day's chain head and what was found. */
export async function recover(
  parts: RecoveryParts,
): Promise<{ heads: Map<string, ChainHead>; stats: EdrRecoveryStats }> {
  const recovery = new Recovery(parts);
  await recovery.run();
  return { heads: recovery.heads, stats: recovery.stats };
}

class Recovery {
  readonly #parts: RecoveryParts;
  readonly #files = new AtomicFiles("r");
  readonly heads = new Map<string, ChainHead>();
  readonly stats: EdrRecoveryStats = {
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

  constructor(parts: RecoveryParts) {
    this.#parts = parts;
  }

  async run(): Promise<void> {
    const dir = this.#parts.dir;
    try {
      for (const sub of ["wal", "edr", "inputs", "tmp"]) {
        await Deno.mkdir(`${dir}/${sub}`, { recursive: true });
      }
      // Temp files are only ever half-made files of a crashed process.
      for await (const entry of Deno.readDir(`${dir}/tmp`)) {
        await Deno.remove(`${dir}/tmp/${entry.name}`, { recursive: true }).catch(() => {});
      }
    } catch (error) {
      throw new EdrWriteError(
        `cannot prepare edr artifacts dir ${dir} (${reasonOf(error)}); ${remedyFor(error, dir)}`,
        { cause: error },
      );
    }
    const names: string[] = [];
    for await (const entry of Deno.readDir(`${dir}/wal`)) {
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
  }

  async #recoverWal(name: string, pastDay: boolean): Promise<void> {
    const day = name.slice(0, 10);
    const { log, materializer } = this.#parts;
    this.stats.wal_files++;
    // Anything found wrong or restored keeps the day from being marked as checked.
    let dirty = false;
    // Verified lines go to the worker in chunks as the scan finds them, so files are restored while the
    // rest of the log is read; only line offsets are kept, never records.
    const replies: Promise<MaterializeReply>[] = [];
    let chunk: number[] = [];
    const postChunk = () => {
      if (chunk.length === 0) return;
      replies.push(materializer.restore(day, chunk));
      chunk = [];
    };
    let records = 0;
    let lineNo = 0;
    const onLine = (line: Uint8Array, start: number) => {
      lineNo++;
      const entry = parseLine(line);
      if (!entry || edrDay(entry.record.timestamp) !== day) {
        dirty = true;
        this.stats.corrupt_lines++;
        log({ level: "warn", msg: "edr wal line skipped: not a valid record", wal: name, line: lineNo });
        return;
      }
      const { record } = entry;
      records++;
      const head = this.heads.get(day);
      const linked = head
        ? record.sequence === head.sequence + 1 && record.prev_edr_hash === head.edrHash
        : record.sequence === 1 && record.prev_edr_hash === null;
      if (!linked) {
        dirty = true;
        this.stats.chain_breaks++;
        log({ level: "warn", msg: "edr wal chain break", wal: name, sequence: record.sequence });
      }
      this.heads.set(day, { sequence: record.sequence, edrHash: record.edr_hash });
      // The line's input is stored under the hash its record points to.
      const pointer = record.replay?.required_inputs_pointer;
      if (entry.input !== undefined && pointer) this.#parts.inputs.remember(inputHashOfPointer(pointer));
      chunk.push(start, start + line.length);
      if (chunk.length >= RESTORE_CHUNK_LINES * 2) postChunk();
    };
    const path = walPathOn(this.#parts.dir, day);
    const { linesEnd, logEnd, fileSize } = await scanWalLines(path, onLine);
    postChunk();
    if (linesEnd < logEnd) {
      // The process died mid-append: that record was never acknowledged. Cut it so later appends start clean.
      dirty = true;
      this.stats.torn_tails++;
      log({ level: "warn", msg: "edr wal torn tail truncated", wal: name, bytes: logEnd - linesEnd });
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
    materializer.postedUpTo(day, linesEnd);
    this.#parts.wal.setEnd(day, linesEnd);
    this.stats.records += records;
    let newestFileMs = 0;
    for (const reply of await Promise.all(replies)) {
      this.stats.files_restored += reply.files;
      this.stats.inputs_restored += reply.inputs;
      this.stats.files_repaired += reply.repaired;
      newestFileMs = Math.max(newestFileMs, reply.newestFileMs);
      if (reply.files + reply.inputs > 0) dirty = true;
      if (reply.errors.length > 0) {
        throw new EdrWriteError(
          `cannot restore ${reply.errors.length} edr files from the wal (${reply.errors[0]}); ${
            remedyFor(reply.errors[0], this.#parts.dir)
          }`,
        );
      }
    }
    // Files this young may still sit only in the page cache, so a power loss could take them after the check.
    if (pastDay && !dirty && newestFileMs <= Date.now() - CHECKED_FILES_MIN_AGE_MS) {
      const head = this.heads.get(day) ?? null;
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
      walBytes = (await Deno.stat(walPathOn(this.#parts.dir, day))).size;
    } catch {
      return false;
    }
    const head = marker?.head;
    const headValid = head === null ||
      (Number.isSafeInteger(head?.sequence) && typeof head?.edrHash === "string");
    if (marker?.wal_bytes !== walBytes || !Number.isSafeInteger(marker.records) || !headValid) return false;
    if (head) this.heads.set(day, { sequence: head.sequence, edrHash: head.edrHash });
    this.#parts.materializer.postedUpTo(day, walBytes);
    this.#parts.wal.setEnd(day, walBytes);
    this.stats.wal_files++;
    this.stats.days_trusted++;
    this.stats.records += marker.records;
    return true;
  }

  async #markDayChecked(day: string, marker: DayCheckMarker): Promise<void> {
    const path = this.#checkedPath(day);
    const dir = this.#parts.dir;
    try {
      // A marker from an earlier size of the log no longer applies.
      await Deno.remove(path).catch(() => {});
      this.#files.create(`${dir}/tmp`, path, JSON.stringify(marker) + "\n", { durable: true });
      await syncDir(`${dir}/wal`);
    } catch (error) {
      // Harmless: the day is simply checked again at the next start.
      this.#parts.log({
        level: "warn",
        msg: "edr wal check marker not written",
        reason: reasonOf(error),
        day,
      });
    }
  }

  #checkedPath(day: string): string {
    return `${this.#parts.dir}/wal/${day}.checked.json`;
  }
}

/** A WAL line's record (when its `edr_hash` verifies) and input, or null. */
function parseLine(line: Uint8Array): { record: EdrRecord; input: unknown } | null {
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
