/**
 * The explorer's records read from an artifacts folder (docs/edr-format.md): each day's write-ahead log,
 * which holds every durable record in sequence order, including those whose own file the writer's worker
 * has not made yet; and, for a day whose log is gone (archived), the record files of its `edr/` folder.
 * Logs are read incrementally (only the bytes added since the last look), and only summaries and where
 * each record lies are kept in memory: a record is read again from disk when it is asked for.
 */
import { join } from "node:path";
import { concatBytes } from "../bytes.ts";
import { edrPath, type EdrRecord } from "../edr/mod.ts";
import { replayEdr, type VerifyResult, verifyTree } from "../replay/mod.ts";
import {
  type DayCount,
  type DayVerification,
  dayVerification,
  type ExplorerReplay,
  type RecordFilter,
  type RecordPage,
  type RecordSource,
} from "./source.ts";
import { matches, type RecordSummary, summarize } from "./summary.ts";

/** Options of the file source. */
export interface FileSourceOptions {
  /** Makes every committed record's file exist (the running router's `EdrWriter.flush`); before verify and replay. */
  flush?: () => Promise<void>;
  /**
   * The local Ollama hosts a replay may re-execute on (the only hosts it may reach), in `OLLAMA_HOST`
   * order: a record is replayed on the host that served it when listed, else on the first.
   */
  ollamaUrls: string[];
  /** How long a replay may wait for the local model (default 60 s). */
  replayTimeoutMs?: number;
}

type Place = { kind: "wal"; start: number; length: number } | { kind: "file"; path: string };

interface DayIndex {
  rows: RecordSummary[];
  places: Place[];
  /** Where the next unread line of the day's log starts. */
  walOffset: number;
  /** Record files read, for a day without a log. */
  fileCount: number;
}

const WAL_NAME = /^(\d{4}-\d{2}-\d{2})\.log$/;
const DIGITS = [/^\d{4}$/, /^\d{2}$/, /^\d{2}$/];
const BLOCK_BYTES = 1024 * 1024;
const decoder = new TextDecoder();

/** Reads records from an artifacts folder; see the module comment. */
export class FileRecordSource implements RecordSource {
  readonly #dir: string;
  readonly #options: FileSourceOptions;
  readonly #days = new Map<string, DayIndex>();
  readonly #byId = new Map<string, { day: string; index: number }>();
  #refreshing: Promise<void> = Promise.resolve();
  #queued: Promise<void> | null = null;
  #verifying = new Map<string, Promise<VerifyResult>>();
  // One read buffer for every log: refreshes run one at a time.
  readonly #block = new Uint8Array(BLOCK_BYTES);

  constructor(artifactsDir: string, options: FileSourceOptions) {
    this.#dir = artifactsDir;
    this.#options = options;
  }

  async days(): Promise<DayCount[]> {
    await this.#refresh();
    return [...this.#days.entries()]
      .filter(([, index]) => index.rows.length > 0)
      .map(([day, index]) => ({ day, records: index.rows.length }))
      .sort((a, b) => (a.day < b.day ? 1 : -1));
  }

  isCursor(cursor: string): boolean {
    return CURSOR.test(cursor);
  }

  async list(filter: RecordFilter, page: { cursor?: string; limit: number }): Promise<RecordPage> {
    await this.#refresh();
    const after = parseCursor(page.cursor);
    const days = [...this.#days.keys()].filter((d) => !filter.day || d === filter.day).sort().reverse();
    const out: RecordSummary[] = [];
    let total = 0;
    let next: string | null = null;
    for (const day of days) {
      const rows = this.#days.get(day)!.rows;
      for (let i = rows.length - 1; i >= 0; i--) {
        const row = rows[i];
        if (!matches(row, filter)) continue;
        total++;
        if (after && (day > after.day || (day === after.day && row.sequence >= after.sequence))) continue;
        if (out.length < page.limit) out.push(row);
        else if (next === null) next = cursorOf(out[out.length - 1]);
      }
    }
    return { records: out, next_cursor: next, total };
  }

  async daySummaries(day: string): Promise<RecordSummary[]> {
    await this.#refresh();
    return [...(this.#days.get(day)?.rows ?? [])];
  }

  async get(requestId: string): Promise<EdrRecord | null> {
    await this.#refresh();
    const where = this.#byId.get(requestId);
    if (!where) return null;
    const place = this.#days.get(where.day)!.places[where.index];
    if (place.kind === "file") return JSON.parse(await Deno.readTextFile(place.path)) as EdrRecord;
    const file = await Deno.open(this.#walPath(where.day), { read: true });
    try {
      await file.seek(place.start, Deno.SeekMode.Start);
      const bytes = new Uint8Array(place.length);
      let filled = 0;
      while (filled < bytes.length) {
        const n = await file.read(bytes.subarray(filled));
        if (n === null) throw new Error(`the log of ${where.day} is shorter than when it was read`);
        filled += n;
      }
      return recordOfLine(bytes);
    } finally {
      file.close();
    }
  }

  async verifyDay(day: string): Promise<DayVerification> {
    // Only the day's own folder, log and checkpoints are read; calls for a day that arrive while its
    // verify runs share the result.
    let verifying = this.#verifying.get(day);
    if (verifying === undefined) {
      verifying = (async () => {
        await this.#options.flush?.();
        return await verifyTree(join(this.#dir, "edr"), { day });
      })().finally(() => this.#verifying.delete(day));
      this.#verifying.set(day, verifying);
    }
    return dayVerification(day, await verifying);
  }

  async replay(requestId: string): Promise<ExplorerReplay | null> {
    const record = await this.get(requestId);
    if (record === null) return null;
    await this.#options.flush?.();
    const allowed = new Set(this.#options.ollamaUrls.map((url) => new URL(url).origin));
    // The engine reaches only the local Ollama hosts, to re-execute a local record; anything else is
    // refused here, whatever the process's own permissions allow.
    const localOnly: typeof fetch = (input, init) => {
      const url = new URL(input instanceof Request ? input.url : String(input));
      if (!allowed.has(url.origin)) {
        return Promise.reject(new Error(`replay may reach only the local Ollama, not ${url.origin}`));
      }
      return fetch(input, init);
    };
    const { report } = await replayEdr(join(this.#dir, edrPath(record)), {
      artifactsDir: this.#dir,
      allowNetwork: false,
      allowSideEffects: false,
      ollamaUrl: this.#options.ollamaUrls.join(","),
      fetch: localOnly,
      timeoutMs: this.#options.replayTimeoutMs ?? 60_000,
      writeReport: false,
    });
    return { report };
  }

  #walPath(day: string): string {
    return join(this.#dir, "wal", `${day}.log`);
  }

  /**
   * Brings the index up to date; one refresh at a time, later callers wait for the running one. Callers
   * that arrive while a refresh still waits its turn share it (it starts after they called), so a page
   * asking for every day's summaries at once reads the folder twice at most, not once per day.
   */
  #refresh(): Promise<void> {
    if (this.#queued) return this.#queued;
    const run = this.#refreshing.then(() => {
      this.#queued = null;
      return this.#refreshNow();
    });
    this.#queued = run;
    this.#refreshing = run.catch(() => {});
    return run;
  }

  async #refreshNow(): Promise<void> {
    const walDays = new Set<string>();
    for (const name of await listNames(join(this.#dir, "wal"))) {
      const match = WAL_NAME.exec(name);
      if (match) walDays.add(match[1]);
    }
    for (const day of walDays) await this.#readWal(day);
    for (const [day, folder] of await this.#fileDays()) {
      if (!walDays.has(day)) await this.#readFiles(day, folder);
    }
  }

  #index(day: string): DayIndex {
    let index = this.#days.get(day);
    if (!index) {
      index = { rows: [], places: [], walOffset: 0, fileCount: -1 };
      this.#days.set(day, index);
    }
    return index;
  }

  #add(day: string, index: DayIndex, record: EdrRecord, place: Place): void {
    if (this.#byId.has(record.request_id)) return;
    this.#byId.set(record.request_id, { day, index: index.rows.length });
    index.rows.push(summarize(record));
    index.places.push(place);
  }

  async #readWal(day: string): Promise<void> {
    const index = this.#index(day);
    const file = await Deno.open(this.#walPath(day), { read: true });
    try {
      await file.seek(index.walOffset, Deno.SeekMode.Start);
      const block = this.#block;
      let carry = new Uint8Array(0);
      let offset = index.walOffset;
      for (;;) {
        const n = await file.read(block);
        if (n === null) break;
        let data = carry.length === 0 ? block.subarray(0, n) : concatBytes([carry, block.subarray(0, n)]);
        const nul = data.indexOf(0);
        if (nul !== -1) data = data.subarray(0, nul);
        let from = 0;
        for (let newline = data.indexOf(10); newline !== -1; newline = data.indexOf(10, from)) {
          const line = data.subarray(from, newline);
          try {
            this.#add(day, index, recordOfLine(line), { kind: "wal", start: offset, length: line.length });
          } catch {
            // A line that does not parse is verify's to report; the table shows what can be read.
          }
          offset += newline - from + 1;
          from = newline + 1;
        }
        carry = data.slice(from);
        // Zeros mark the end of a live log: what follows is not written yet.
        if (nul !== -1) break;
      }
      index.walOffset = offset;
    } finally {
      file.close();
    }
  }

  async #readFiles(day: string, folder: string): Promise<void> {
    const names = (await listNames(folder)).filter((n) => n.endsWith(".json")).sort();
    const index = this.#index(day);
    if (names.length === index.fileCount) return;
    const found: { record: EdrRecord; path: string }[] = [];
    for (const name of names) {
      const path = join(folder, name);
      try {
        found.push({ record: JSON.parse(await Deno.readTextFile(path)) as EdrRecord, path });
      } catch {
        // unreadable: verify reports it
      }
    }
    for (const row of index.rows) this.#byId.delete(row.request_id);
    index.rows = [];
    index.places = [];
    found.sort((a, b) => a.record.sequence - b.record.sequence);
    for (const { record, path } of found) this.#add(day, index, record, { kind: "file", path });
    index.fileCount = names.length;
  }

  async #fileDays(): Promise<Map<string, string>> {
    const out = new Map<string, string>();
    const walk = async (folder: string, parts: string[]) => {
      if (parts.length === 3) {
        out.set(parts.join("-"), folder);
        return;
      }
      for (const name of await listNames(folder)) {
        if (DIGITS[parts.length].test(name)) await walk(join(folder, name), [...parts, name]);
      }
    };
    await walk(join(this.#dir, "edr"), []);
    return out;
  }
}

/** The record of a WAL line `{"input":…,"record":…}` (the record is never the input's text). */
function recordOfLine(line: Uint8Array): EdrRecord {
  const parsed = JSON.parse(decoder.decode(line)) as { record?: EdrRecord };
  if (typeof parsed.record !== "object" || parsed.record === null) throw new Error("no record in the line");
  return parsed.record;
}

async function listNames(folder: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const entry of Deno.readDir(folder)) names.push(entry.name);
  } catch (error) {
    if (!(error instanceof Deno.errors.NotFound)) throw error;
  }
  return names;
}

function cursorOf(row: RecordSummary): string {
  return `${row.day}.${row.sequence}`;
}

/** A page boundary: the day and sequence of the last record of the previous page. */
const CURSOR = /^(\d{4}-\d{2}-\d{2})\.(\d+)$/;

function parseCursor(cursor: string | undefined): { day: string; sequence: number } | null {
  if (!cursor) return null;
  const match = CURSOR.exec(cursor);
  return match ? { day: match[1], sequence: Number(match[2]) } : null;
}
