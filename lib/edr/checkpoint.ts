/**
 * Checkpoints: an anchor for each UTC day's chain that truncation cannot forge. The router appends, now
 * and then and at shutdown, one line per day whose durable head moved to
 * `checkpoints/<YYYY-MM-DD>.jsonl`: the head's sequence (the day's record count), its `edr_hash` and the
 * time, signed with HMAC-SHA256 under an operator key (or marked `"unsigned"` when the policy names no
 * key). `deno task verify` then finds a cut or re-chained tail: the records a checkpoint counted must
 * still be there, the checkpointed one at its sequence. The same heads are served at `GET /v1/edr/head`
 * so they can be shipped off the host, where deleting checkpoint lines cannot reach them.
 */
import { signAuthority } from "../authority/mod.ts";
import { timingSafeEqual } from "node:crypto";

/** The `signature` of a checkpoint written with no key configured. */
export const UNSIGNED = "unsigned";

/** One checkpoint line: a day's durable chain head at a moment. */
export interface Checkpoint {
  /** The UTC day, `YYYY-MM-DD`. */
  day: string;
  /** The head's sequence, which is the number of records the day had. */
  sequence: number;
  /** The head's `edr_hash`. */
  edr_hash: string;
  /** When the checkpoint was taken (ISO 8601, UTC). */
  at: string;
  /** Which operator key signed it; null when unsigned. */
  key_id: string | null;
  /** HMAC-SHA256 (base64url, no padding) over the RFC 8785 JSON of the other fields, or `"unsigned"`. */
  signature: string;
}

/** The key checkpoints are signed with. */
export interface CheckpointKey {
  keyId: string;
  hmacSecret: string;
}

/** Where a day's checkpoints are kept under an artifacts folder. */
export function checkpointPathOn(dir: string, day: string): string {
  return `${dir}/checkpoints/${day}.jsonl`;
}

/** Signs a head with `key`, or marks it unsigned when there is none. */
export async function signCheckpoint(
  head: Pick<Checkpoint, "day" | "sequence" | "edr_hash" | "at">,
  key: CheckpointKey | null,
): Promise<Checkpoint> {
  if (key === null) return { ...head, key_id: null, signature: UNSIGNED };
  const unsigned = { day: head.day, sequence: head.sequence, edr_hash: head.edr_hash, at: head.at };
  return await signAuthority({ ...unsigned, key_id: key.keyId }, { hmacSecret: key.hmacSecret });
}

/** Whether a signed checkpoint's signature holds under `hmacSecret` (compared in constant time). */
export async function checkpointSignatureHolds(checkpoint: Checkpoint, hmacSecret: string): Promise<boolean> {
  if (checkpoint.signature === UNSIGNED || checkpoint.key_id === null) return false;
  const { signature } = await signCheckpoint(checkpoint, { keyId: checkpoint.key_id, hmacSecret });
  const a = new TextEncoder().encode(signature);
  const b = new TextEncoder().encode(checkpoint.signature);
  return a.length === b.length && timingSafeEqual(a, b);
}

/** Parses one checkpoint line; a string is the reason it is not one. */
export function parseCheckpoint(line: string): Checkpoint | string {
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return "it is not JSON";
  }
  if (value === null || typeof value !== "object" || Array.isArray(value)) return "it is not a JSON object";
  const o = value as Record<string, unknown>;
  if (typeof o.day !== "string" || !/^\d{4}-\d{2}-\d{2}$/.test(o.day)) return "its day is not YYYY-MM-DD";
  if (!Number.isSafeInteger(o.sequence) || (o.sequence as number) < 1) return "its sequence is not a count";
  if (typeof o.edr_hash !== "string" || !/^[0-9a-f]{64}$/.test(o.edr_hash)) {
    return "its edr_hash is not a hash";
  }
  if (typeof o.at !== "string" || Number.isNaN(Date.parse(o.at))) return "its time is not a timestamp";
  if (o.key_id !== null && typeof o.key_id !== "string") return "its key_id is not a string or null";
  if (typeof o.signature !== "string") return "it has no signature field";
  if ((o.signature === UNSIGNED) !== (o.key_id === null)) return "its key_id and signature disagree";
  return {
    day: o.day,
    sequence: o.sequence as number,
    edr_hash: o.edr_hash,
    at: o.at,
    key_id: o.key_id as string | null,
    signature: o.signature,
  };
}

/** What the checkpoint writer reads: the writer's durable heads, by `YYYY-MM-DD`. */
export interface HeadSource {
  heads(): Map<string, { sequence: number; edrHash: string }>;
}

/** Options of `CheckpointWriter.start`. */
export interface CheckpointWriterOptions {
  /** How often heads that moved are checkpointed. */
  intervalMs: number;
  /** The signing key; unsigned checkpoints without one. */
  key?: CheckpointKey | null;
  now?: () => number;
  /** Where a failed checkpoint write is reported (reason only). */
  log?: (message: string) => void;
}

/** Appends signed checkpoints of the writer's durable heads, on a timer and once more when stopped. */
export class CheckpointWriter {
  readonly #dir: string;
  readonly #source: HeadSource;
  readonly #key: CheckpointKey | null;
  readonly #now: () => number;
  readonly #log: (message: string) => void;
  /** The head last checkpointed per day (heads recovered at start count as done: their days are over). */
  #written = new Map<string, number>();
  /** The heads this process started with: days whose head is unchanged since are not served. */
  readonly #atStart = new Map<string, number>();
  /** The newest day this process started with (served even before its head moves). */
  readonly #newest: string | undefined;
  #timer: ReturnType<typeof setInterval> | null = null;
  #chain: Promise<unknown> = Promise.resolve();

  private constructor(dir: string, source: HeadSource, options: CheckpointWriterOptions) {
    this.#dir = dir.replace(/\/+$/, "") || "/";
    this.#source = source;
    this.#key = options.key ?? null;
    this.#now = options.now ?? Date.now;
    this.#log = options.log ?? ((message) => console.error(message));
    const heads = source.heads();
    for (const [day, head] of heads) {
      this.#written.set(day, head.sequence);
      this.#atStart.set(day, head.sequence);
    }
    this.#newest = [...heads.keys()].sort().pop();
  }

  /** Starts checkpointing every `intervalMs` (the timer never keeps the process alive). */
  static start(dir: string, source: HeadSource, options: CheckpointWriterOptions): CheckpointWriter {
    const writer = new CheckpointWriter(dir, source, options);
    writer.#timer = setInterval(() => writer.checkpoint().catch(() => {}), Math.max(1, options.intervalMs));
    Deno.unrefTimer(writer.#timer);
    return writer;
  }

  /** Signed heads of the days this process has written to (and the newest day it started with). */
  async heads(): Promise<Checkpoint[]> {
    const heads = this.#source.heads();
    const at = new Date(this.#now()).toISOString();
    const days = [...heads].filter(([day, head]) =>
      day === this.#newest || this.#atStart.get(day) !== head.sequence
    ).map(([day]) => day).sort();
    return await Promise.all(days.map((day) => {
      const head = heads.get(day)!;
      return signCheckpoint({ day, sequence: head.sequence, edr_hash: head.edrHash, at }, this.#key);
    }));
  }

  /** Appends a checkpoint for every day whose head moved since the last one; resolves with how many. */
  checkpoint(): Promise<number> {
    const run = this.#chain.then(() => this.#write());
    this.#chain = run.catch(() => {});
    return run;
  }

  /** Stops the timer and writes a last checkpoint of what moved (call after the EDR writer closed). */
  async stop(): Promise<void> {
    if (this.#timer !== null) clearInterval(this.#timer);
    this.#timer = null;
    await this.checkpoint().catch(() => {});
  }

  async #write(): Promise<number> {
    const at = new Date(this.#now()).toISOString();
    let count = 0;
    for (const [day, head] of this.#source.heads()) {
      if (this.#written.get(day) === head.sequence) continue;
      const line = await signCheckpoint(
        { day, sequence: head.sequence, edr_hash: head.edrHash, at },
        this.#key,
      );
      try {
        await this.#append(day, JSON.stringify(line) + "\n");
        this.#written.set(day, head.sequence);
        count++;
      } catch (error) {
        this.#log(
          `edr checkpoint of ${day} not written (${
            (error as Error).message
          }); it is retried at the next interval`,
        );
      }
    }
    return count;
  }

  async #append(day: string, text: string): Promise<void> {
    const folder = `${this.#dir}/checkpoints`;
    await Deno.mkdir(folder, { recursive: true });
    const path = checkpointPathOn(this.#dir, day);
    const file = await Deno.open(path, { append: true, create: true });
    let created: boolean;
    try {
      created = (await file.stat()).size === 0;
      const bytes = new TextEncoder().encode(text);
      let offset = 0;
      while (offset < bytes.length) offset += await file.write(bytes.subarray(offset));
      await file.syncData();
    } finally {
      file.close();
    }
    if (created) {
      // A new file's directory entry must be durable too, or a crash could lose the whole file.
      const dir = await Deno.open(folder, { read: true });
      try {
        await dir.sync();
      } finally {
        dir.close();
      }
    }
  }
}
