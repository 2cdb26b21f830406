/**
 * The durable single-use lease store. Each reservation is one line `<sha256(lease_id)> <expires_at_ms>`
 * appended to `<artifactsDir>/leases/leases.log`; concurrent reservations share one fdatasync (group
 * commit). Whether an id is taken is decided synchronously in memory, so two simultaneous reservations
 * of one id can never both win; the winner's promise resolves only once its line is on disk.
 */
import { createHash } from "node:crypto";
import { join } from "node:path";

const LOG_NAME = "leases.log";
const LINE = /^([0-9a-f]{64}) (\d{1,16})$/;
/** Sweep expired entries after this many appends (or as many as there are entries, if more). */
const SWEEP_EVERY = 4096;

/** What the authority check needs of a lease store (lets tests substitute a fake). */
export interface LeaseReserver {
  /** Reserves a lease id until `expiresAtMs`; "replay" when it is already reserved and unexpired. */
  reserve(leaseId: string, expiresAtMs: number, nowMs: number): Promise<"reserved" | "replay">;
}

/**
 * A lease store that cannot answer (a shared store out of reach): the request fails closed with a 503
 * `LEASE_STORE_UNAVAILABLE`, since granting a lease nobody recorded could let it be used twice.
 */
export class LeaseStoreUnavailableError extends Error {
  /** Creates the error; `message` names the store, never a lease id. */
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = "LeaseStoreUnavailableError";
  }
}

/** Options for `LeaseStore.open`. */
export interface LeaseStoreOptions {
  /** Clock used to drop expired entries while loading; defaults to `Date.now`. */
  now?: () => number;
}

/** The sha256 hex of a lease id: what the store and EDRs keep instead of the id itself. */
export function hashLeaseId(leaseId: string): string {
  return createHash("sha256").update(leaseId, "utf8").digest("hex");
}

const openDirs = new Set<string>();

interface Pending {
  line: string;
  resolve: () => void;
  reject: (error: unknown) => void;
}

/** Durable single-use leases under `<artifactsDir>/leases/`, one instance per directory per process. */
export class LeaseStore implements LeaseReserver {
  #dir: string;
  #file: Deno.FsFile;
  #entries: Map<string, number>;
  #pending: Pending[] = [];
  #flushing: Promise<void> | null = null;
  #linesInLog: number;
  #appendsSinceSweep = 0;
  #sizeAfterSweep: number;
  #lastNow: number;
  #failure: unknown = null;
  #closed = false;

  private constructor(dir: string, file: Deno.FsFile, entries: Map<string, number>, now: number) {
    this.#dir = dir;
    this.#file = file;
    this.#entries = entries;
    this.#linesInLog = entries.size;
    this.#sizeAfterSweep = entries.size;
    this.#lastNow = now;
  }

  /** Opens (creating if needed) the store, loading the log and dropping expired entries. */
  static async open(artifactsDir: string, options: LeaseStoreOptions = {}): Promise<LeaseStore> {
    const dir = join(artifactsDir, "leases");
    const key = await Deno.mkdir(dir, { recursive: true }).then(() => Deno.realPath(dir));
    if (openDirs.has(key)) {
      throw new Error(`lease store ${dir} is already open in this process; share one LeaseStore instance`);
    }
    openDirs.add(key);
    try {
      const now = (options.now ?? Date.now)();
      const entries = await loadLog(join(dir, LOG_NAME), now);
      // Rewriting on open also drops a torn last line, so later appends start on a clean line.
      const file = await rewriteLog(dir, entries);
      const store = new LeaseStore(key, file, entries, now);
      return store;
    } catch (error) {
      openDirs.delete(key);
      throw error;
    }
  }

  /** How many unexpired-or-not-yet-compacted lease ids the store holds. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Reserves `leaseId` until `expiresAtMs`. Resolves "reserved" once durable, "replay" when the id is
   * held and unexpired at `nowMs`; rejects (fail closed) when the store cannot write.
   */
  reserve(leaseId: string, expiresAtMs: number, nowMs: number): Promise<"reserved" | "replay"> {
    if (this.#closed) {
      return Promise.reject(new Error("lease store is closed; open it again before reserving"));
    }
    if (this.#failure !== null) {
      return Promise.reject(
        new Error("lease store failed to write earlier; restart the router", {
          cause: this.#failure,
        }),
      );
    }
    if (!Number.isSafeInteger(expiresAtMs) || expiresAtMs < 0) {
      return Promise.reject(new RangeError("expiresAtMs must be a non-negative integer of milliseconds"));
    }
    const key = hashLeaseId(leaseId);
    this.#lastNow = Math.max(this.#lastNow, nowMs);
    const held = this.#entries.get(key);
    // The decision happens here, before any await, which is what makes concurrent reserves atomic.
    if (held !== undefined && held >= nowMs) return Promise.resolve("replay");
    this.#entries.set(key, expiresAtMs);
    return new Promise<void>((resolve, reject) => {
      this.#pending.push({ line: `${key} ${expiresAtMs}\n`, resolve, reject });
      this.#flushing ??= this.#flushLoop();
    }).then(() => "reserved" as const);
  }

  /** Waits for pending reservations to become durable, then closes the log. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#flushing;
    this.#file.close();
    openDirs.delete(this.#dir);
  }

  async #flushLoop(): Promise<void> {
    // Yield once so reservations made in the same tick join this batch.
    await Promise.resolve();
    while (this.#pending.length > 0) {
      const batch = this.#pending;
      this.#pending = [];
      try {
        if (this.#failure !== null) throw this.#failure;
        await writeAll(this.#file, new TextEncoder().encode(batch.map((p) => p.line).join("")));
        await this.#file.syncData();
        this.#linesInLog += batch.length;
        this.#appendsSinceSweep += batch.length;
      } catch (error) {
        this.#failure ??= error;
        // Ids stay held in memory: a reservation whose durability is unknown must not be granted again.
        const failure = new Error("lease store could not make the reservation durable", { cause: error });
        for (const p of batch) p.reject(failure);
        continue;
      }
      for (const p of batch) p.resolve();
      try {
        await this.#maybeCompact();
      } catch (error) {
        // After a failed swap the append handle may point at an unlinked file: stop granting leases.
        this.#failure ??= error;
      }
    }
    this.#flushing = null;
  }

  async #maybeCompact(): Promise<void> {
    // A sweep costs O(entries) <= 2 x the appends since the last one, so it is O(1) amortised per append.
    if (this.#appendsSinceSweep < Math.max(SWEEP_EVERY, this.#sizeAfterSweep)) return;
    this.#appendsSinceSweep = 0;
    for (const [key, expiresAt] of this.#entries) {
      if (expiresAt < this.#lastNow) this.#entries.delete(key);
    }
    this.#sizeAfterSweep = this.#entries.size;
    if (this.#linesInLog < SWEEP_EVERY + 2 * this.#entries.size) return;
    const file = await rewriteLog(this.#dir, this.#entries);
    this.#file.close();
    this.#file = file;
    this.#linesInLog = this.#entries.size;
  }
}

async function loadLog(path: string, now: number): Promise<Map<string, number>> {
  const entries = new Map<string, number>();
  let text: string;
  try {
    text = await Deno.readTextFile(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return entries;
    throw error;
  }
  for (const line of text.split("\n")) {
    const match = LINE.exec(line);
    // A torn last line (kill -9 mid-append) never had its reservation acknowledged, so skipping is safe.
    if (match === null) continue;
    const expiresAt = Number(match[2]);
    if (expiresAt < now) continue;
    entries.set(match[1], Math.max(expiresAt, entries.get(match[1]) ?? 0));
  }
  return entries;
}

/** Writes the live entries to a fresh log atomically and returns it opened for appending. */
async function rewriteLog(dir: string, entries: Map<string, number>): Promise<Deno.FsFile> {
  const path = join(dir, LOG_NAME);
  const tmp = join(dir, `${LOG_NAME}.tmp`);
  const lines: string[] = [];
  for (const [key, expiresAt] of entries) lines.push(`${key} ${expiresAt}\n`);
  const out = await Deno.open(tmp, { write: true, create: true, truncate: true, mode: 0o600 });
  try {
    await writeAll(out, new TextEncoder().encode(lines.join("")));
    await out.sync();
  } finally {
    out.close();
  }
  await Deno.rename(tmp, path);
  const dirHandle = await Deno.open(dir, { read: true });
  try {
    await dirHandle.sync();
  } finally {
    dirHandle.close();
  }
  return await Deno.open(path, { append: true });
}

async function writeAll(file: Deno.FsFile, bytes: Uint8Array): Promise<void> {
  let offset = 0;
  while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
}
