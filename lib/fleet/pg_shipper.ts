/**
 * Ships this replica's EDRs to PostgreSQL, off the request path. The local write-ahead log stays the
 * commit point: an answer waits only for its fdatasync. A loop polls the writer's durable chain heads
 * (a map copy, no per-request hook), reads the WAL lines past what it shipped, and inserts them in
 * batches, in sequence order, with `ON CONFLICT DO NOTHING` on (replica id, decision_core_hash), so a
 * batch sent twice (a crash between the insert and the loop noting it) lands once. Only records at or
 * below the durable head are read: a line past it may belong to a batch whose fdatasync has not returned
 * and could still be cut. The database is the resume point: at start the loop asks it for the last
 * sequence shipped of each of this replica's days. While the database is down the loop retries with
 * backoff and the backlog grows; answers continue. Checkpoint lines follow their records.
 */
import { concatBytes } from "../bytes.ts";
import { checkpointPathOn, parseCheckpoint } from "../edr/mod.ts";
import { databaseReason, type DatabaseTarget, type Sql } from "./pg_connect.ts";
import { type RecordRow, recordRow, recordTextOfWalLine } from "./pg_rows.ts";

/** Options of `EdrShipper.start`. */
export interface EdrShipperOptions {
  sql: Sql;
  target: DatabaseTarget;
  artifactsDir: string;
  replicaId: string;
  /** The writer's durable chain heads per UTC day (`EdrWriter.heads()`). */
  heads: () => Map<string, { sequence: number; edrHash: string }>;
  log: (line: string) => void;
  /** Most records in one INSERT (default 500). */
  batchRecords?: number;
  /** How often the loop looks for new durable records when it has nothing to ship (default 250 ms). */
  pollMs?: number;
  /** The longest wait between retries while the database fails (default 5 s; it starts at 100 ms). */
  maxBackoffMs?: number;
  /** How often checkpoint files are looked at (default 2 s). */
  checkpointPollMs?: number;
}

/** What `/readyz` and `/metrics` show of the shipping. */
export interface EdrShippingStatus {
  /** `ok`, `retrying` (the last attempt failed; the loop retries with backoff) or `stopped`. */
  state: "ok" | "retrying" | "stopped";
  replica_id: string;
  /** Durable records not yet in the database. */
  backlog: number;
  shipped_total: number;
  errors_total: number;
  /** The last failure's reason (no URL, no password), or null. */
  last_error: string | null;
}

interface DayCursor {
  /** The highest sequence of this day the database holds from this replica. */
  shipped: number;
  /** Where the next unshipped WAL line starts; null until the log has been read once this run. */
  offset: number | null;
  /** Where the next unshipped checkpoint line starts. */
  checkpointOffset: number;
  /**
   * The database's `edr_hash` at `shipped` when this run started, until the WAL line of that sequence is
   * read and found to be the same record (then null): the chain in the database must be this folder's.
   */
  expectHash: string | null;
  /** Why this day is not shipped: its chain in the database is not this folder's. */
  conflict: string | null;
}

const READ_BLOCK = 1024 * 1024;
const decoder = new TextDecoder();
/** How often a failure that goes on is logged again. */
const REPEAT_LOG_MS = 30_000;

function newCursor(): DayCursor {
  return { shipped: 0, offset: null, checkpointOffset: 0, expectHash: null, conflict: null };
}

/** The asynchronous, ordered, idempotent shipper of one replica's EDRs (see the file comment). */
export class EdrShipper {
  readonly #o: Required<EdrShipperOptions>;
  readonly #cursors = new Map<string, DayCursor>();
  #state: EdrShippingStatus["state"] = "ok";
  #shippedTotal = 0;
  #errorsTotal = 0;
  #lastError: string | null = null;
  #lastErrorLogAt = 0;
  #stopping = false;
  #loop: Promise<void> = Promise.resolve();
  #wake: (() => void) | null = null;
  #timer: ReturnType<typeof setTimeout> | null = null;
  #lastCheckpointPass = 0;
  #backlog = 0;

  private constructor(options: EdrShipperOptions) {
    this.#o = {
      batchRecords: 500,
      pollMs: 250,
      maxBackoffMs: 5_000,
      checkpointPollMs: 2_000,
      ...options,
    };
  }

  /**
   * Reads the resume point (this replica's last shipped sequence per day) and starts the loop. Throws
   * when the database cannot be read: the router then cannot start.
   */
  static async start(options: EdrShipperOptions): Promise<EdrShipper> {
    const shipper = new EdrShipper(options);
    // Each day's last shipped row, found through the (replica_id, day, sequence) index.
    const rows = await options.sql<{ day: string; shipped: string; edr_hash: string }[]>`
      SELECT DISTINCT ON (day) day::text AS day, sequence::text AS shipped, edr_hash
      FROM edr_records WHERE replica_id = ${options.replicaId} ORDER BY day, sequence DESC`;
    const heads = options.heads();
    for (const row of rows) {
      const shipped = Number(row.shipped);
      const cursor = { ...newCursor(), shipped, expectHash: row.edr_hash };
      shipper.#cursors.set(row.day, cursor);
      // A folder whose WAL has been archived has no head: nothing of it is shipped, nothing to compare.
      const local = heads.get(row.day)?.sequence;
      if (local !== undefined && shipped > local) {
        shipper.#conflict(
          row.day,
          cursor,
          `the database holds ${shipped} record(s) of it, this folder ${local}`,
        );
      }
    }
    shipper.#updateBacklog(heads);
    shipper.#loop = shipper.#run();
    return shipper;
  }

  /** Durable records not yet in the database, as of the last pass (or scrape). */
  backlog(): number {
    if (this.#state !== "stopped") this.#updateBacklog(this.#o.heads());
    return this.#backlog;
  }

  /** The shipping state for `/readyz` and `/metrics`. */
  status(): EdrShippingStatus {
    const conflict = [...this.#cursors.values()].find((c) => c.conflict !== null)?.conflict ?? null;
    return {
      state: conflict !== null && this.#state === "ok" ? "retrying" : this.#state,
      replica_id: this.#o.replicaId,
      backlog: this.backlog(),
      shipped_total: this.#shippedTotal,
      errors_total: this.#errorsTotal,
      last_error: conflict ?? this.#lastError,
    };
  }

  /** Stops shipping a day whose chain in the database is another's, and says why once. */
  #conflict(day: string, cursor: DayCursor, detail: string): void {
    cursor.conflict = `the chain of ${day} in the database under replica ${this.#o.replicaId} is not this ` +
      `artifacts folder's (${detail}): another router ships under this replica id, or the folder was ` +
      `replaced; give each replica its own HI_REPLICA_ID and artifacts folder. This day is not shipped`;
    this.#errorsTotal++;
    this.#o.log(`edr shipping: ${cursor.conflict}`);
  }

  /**
   * Ships what it can of the remaining backlog (checkpoints included) within `deadlineMs`, then stops
   * and closes the connection. What is left is shipped by the next start; the WAL keeps it.
   */
  async stop(deadlineMs = 3_000): Promise<void> {
    if (this.#stopping) return await this.#loop;
    this.#stopping = true;
    this.#lastCheckpointPass = 0;
    this.#wakeUp();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const late = new Promise<"late">((resolve) => timer = setTimeout(() => resolve("late"), deadlineMs));
    const outcome = await Promise.race([this.#loop.then(() => "done" as const), late]);
    clearTimeout(timer);
    const left = this.backlog();
    this.#state = "stopped";
    if (outcome === "late" || left > 0) {
      this.#o.log(
        `edr shipping stopped with ${left} record(s) not in PostgreSQL yet; they stay in the WAL and the next ` +
          `start ships them`,
      );
    }
    await this.#o.sql.end({ timeout: 1 }).catch(() => {});
    await this.#loop.catch(() => {});
  }

  #updateBacklog(heads: Map<string, { sequence: number }>): void {
    let backlog = 0;
    for (const [day, head] of heads) {
      backlog += Math.max(0, head.sequence - (this.#cursors.get(day)?.shipped ?? 0));
    }
    this.#backlog = backlog;
  }

  #wakeUp(): void {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  #sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.#wake = resolve;
      this.#timer = setTimeout(() => this.#wakeUp(), ms);
      Deno.unrefTimer(this.#timer);
    });
  }

  async #run(): Promise<void> {
    let backoff = 100;
    for (;;) {
      try {
        const moved = await this.#pass();
        if (this.#state === "retrying") {
          this.#o.log(`edr shipping to PostgreSQL resumed; ${this.backlog()} record(s) waiting`);
        }
        this.#state = "ok";
        this.#lastError = null;
        backoff = 100;
        if (this.#stopping && !moved) return;
        if (!moved) await this.#sleep(this.#o.pollMs);
      } catch (error) {
        this.#errorsTotal++;
        this.#failed(error);
        if (this.#stopping) return;
        await this.#sleep(backoff);
        backoff = Math.min(backoff * 2, this.#o.maxBackoffMs);
      }
    }
  }

  #failed(error: unknown): void {
    const reason = databaseReason(error, this.#o.target);
    const now = Date.now();
    const first = this.#state !== "retrying";
    this.#state = "retrying";
    this.#lastError = reason;
    if (first || now - this.#lastErrorLogAt >= REPEAT_LOG_MS) {
      this.#lastErrorLogAt = now;
      this.#o.log(
        `edr shipping to PostgreSQL ${this.#o.target.redacted} failed (${reason}); answers continue, ` +
          `${this.backlog()} record(s) wait in the WAL, retrying with backoff`,
      );
    }
  }

  /** One pass: a batch of each day that has unshipped durable records, then checkpoints now and then. */
  async #pass(): Promise<boolean> {
    const heads = this.#o.heads();
    let moved = false;
    for (const day of [...heads.keys()].sort()) {
      const head = heads.get(day)!;
      let cursor = this.#cursors.get(day);
      if (!cursor) this.#cursors.set(day, cursor = newCursor());
      if (head.sequence <= cursor.shipped || cursor.conflict !== null) continue;
      if (await this.#shipBatch(day, cursor, head.sequence)) moved = true;
    }
    this.#updateBacklog(heads);
    const now = performance.now();
    if (now - this.#lastCheckpointPass >= this.#o.checkpointPollMs || (this.#stopping && !moved)) {
      for (const day of [...heads.keys()].sort()) {
        const cursor = this.#cursors.get(day)!;
        if (cursor.conflict === null) await this.#shipCheckpoints(day, cursor);
      }
      this.#lastCheckpointPass = now;
    }
    return moved;
  }

  /** Reads the next batch of `day`'s WAL lines up to `durable` and inserts them; true when any was new. */
  async #shipBatch(day: string, cursor: DayCursor, durable: number): Promise<boolean> {
    const rows: RecordRow[] = [];
    let end = cursor.offset ?? 0;
    let skipped = 0;
    const path = `${this.#o.artifactsDir}/wal/${day}.log`;
    let file: Deno.FsFile;
    try {
      file = await Deno.open(path, { read: true });
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return false;
      throw error;
    }
    try {
      await file.seek(end, Deno.SeekMode.Start);
      const block = new Uint8Array(READ_BLOCK);
      let carry = new Uint8Array(0);
      reading: for (;;) {
        const read = await file.read(block);
        if (read === null) break;
        let data = carry.length === 0
          ? block.subarray(0, read)
          : concatBytes([carry, block.subarray(0, read)]);
        const nul = data.indexOf(0);
        if (nul !== -1) data = data.subarray(0, nul);
        let from = 0;
        for (let newline = data.indexOf(10); newline !== -1; newline = data.indexOf(10, from)) {
          const line = data.subarray(from, newline);
          const text = recordTextOfWalLine(line);
          const row = text === null ? null : recordRow(this.#o.replicaId, day, text);
          if (row !== null && row.sequence > durable) break reading;
          from = newline + 1;
          end += line.length + 1;
          if (row !== null && row.sequence === cursor.shipped && cursor.expectHash !== null) {
            if (row.edr_hash !== cursor.expectHash) {
              this.#conflict(day, cursor, `its sequence ${row.sequence} is another record`);
              return false;
            }
            cursor.expectHash = null;
          }
          if (row === null) {
            skipped++;
          } else if (row.sequence > cursor.shipped) {
            rows.push(row);
            if (rows.length >= this.#o.batchRecords) break reading;
          }
        }
        if (nul !== -1) break;
        carry = data.slice(from);
      }
    } finally {
      file.close();
    }
    if (skipped > 0) {
      this.#o.log(`edr shipping: ${skipped} line(s) of wal/${day}.log are not records and were not shipped`);
    }
    if (rows.length > 0) await this.#insert(rows);
    cursor.offset = end;
    if (rows.length === 0) return false;
    cursor.shipped = rows[rows.length - 1].sequence;
    this.#shippedTotal += rows.length;
    return true;
  }

  async #insert(rows: RecordRow[]): Promise<void> {
    const sql = this.#o.sql;
    try {
      await sql`INSERT INTO edr_records ${sql(rows)}
        ON CONFLICT (replica_id, decision_core_hash) DO NOTHING`;
    } catch (error) {
      if ((error as { constraint_name?: string }).constraint_name === "edr_records_chain_position") {
        throw new Error(
          `a sequence of day ${rows[0].day} is already in the database with another record from replica ` +
            `${this.#o.replicaId}: two routers ship under one replica id, or the artifacts folder was ` +
            `replaced; give each replica its own HI_REPLICA_ID and artifacts folder`,
        );
      }
      throw error;
    }
  }

  /** Ships the day's new checkpoint lines whose records are already shipped. */
  async #shipCheckpoints(day: string, cursor: DayCursor): Promise<void> {
    const path = checkpointPathOn(this.#o.artifactsDir, day);
    let bytes: Uint8Array;
    try {
      // Most days' files no longer grow: a stat is all they cost per look.
      if ((await Deno.stat(path)).size <= cursor.checkpointOffset) return;
      const file = await Deno.open(path, { read: true });
      try {
        const size = (await file.stat()).size;
        await file.seek(cursor.checkpointOffset, Deno.SeekMode.Start);
        bytes = new Uint8Array(size - cursor.checkpointOffset);
        let got = 0;
        while (got < bytes.length) {
          const n = await file.read(bytes.subarray(got));
          if (n === null) break;
          got += n;
        }
        bytes = bytes.subarray(0, got);
      } finally {
        file.close();
      }
    } catch (error) {
      if (error instanceof Deno.errors.NotFound) return;
      throw error;
    }
    const rows: Array<Record<string, unknown>> = [];
    let consumed = 0;
    let from = 0;
    for (let newline = bytes.indexOf(10); newline !== -1; newline = bytes.indexOf(10, from)) {
      const text = decoder.decode(bytes.subarray(from, newline));
      const checkpoint = parseCheckpoint(text);
      if (typeof checkpoint !== "string" && checkpoint.sequence > cursor.shipped) break;
      if (typeof checkpoint !== "string" && checkpoint.day === day) {
        rows.push({
          replica_id: this.#o.replicaId,
          day,
          sequence: checkpoint.sequence,
          edr_hash: checkpoint.edr_hash,
          at: checkpoint.at,
          line_text: text,
        });
      }
      from = newline + 1;
      consumed = from;
    }
    if (rows.length > 0) {
      const sql = this.#o.sql;
      await sql`INSERT INTO edr_checkpoints ${sql(rows)}
        ON CONFLICT (replica_id, day, at, sequence) DO NOTHING`;
    }
    cursor.checkpointOffset += consumed;
  }
}
