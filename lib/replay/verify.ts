/**
 * Verification of an EDR tree: every record against the schema and its own hashes, its place on disk,
 * and each day's chain (sequence 1..n, `prev_edr_hash` links, the write-ahead log's head). Every
 * finding names the file it is about, so an operator knows which record to restore.
 */
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import {
  computeDecisionCoreHash,
  computeEdrHash,
  type EdrRecord,
  scanWalLines,
  validateEdr,
} from "../edr/mod.ts";
import { dayPathOf } from "./paths.ts";

/** What kind of damage a finding reports. */
export type FindingKind =
  | "unreadable"
  | "invalid"
  | "altered"
  | "misplaced"
  | "duplicate"
  | "missing"
  | "reordered"
  | "chain_broken";

/** One problem found in the tree. */
export interface VerifyFinding {
  kind: FindingKind;
  /** The day folder (`YYYY/MM/DD`), when the file sits in one. */
  day: string | null;
  /** The file, relative to the verified `edr/` folder (or the name the WAL knows for a missing one). */
  file: string | null;
  /** The record's sequence, when known. */
  sequence: number | null;
  /** One sentence: what is wrong. */
  message: string;
}

/** The outcome of `verifyTree`. */
export interface VerifyResult {
  /** True when there are no findings. */
  ok: boolean;
  /** Record files examined. */
  records: number;
  /** Day folders examined. */
  days: number;
  findings: VerifyFinding[];
}

/** Options of `verifyTree`. */
export interface VerifyOptions {
  /** The write-ahead log folder (`<artifacts>/wal`); default: `wal/` next to the `edr/` folder; null: none. */
  walDir?: string | null;
  /** Called after each file with (done, total), e.g. to draw a progress bar. */
  onProgress?: (done: number, total: number) => void;
}

interface Entry {
  file: string;
  day: string | null;
  record: EdrRecord | null;
  /** A byte-identical or same-record copy of another, correctly named file. */
  copyOf?: string;
  /** In a folder other than its timestamp's day: reported, and kept out of that folder's chain. */
  wrongDay?: boolean;
}

/** One record the write-ahead log knows, as far as its line says. */
export interface WalEntry {
  sequence: number | null;
  edr_hash: string | null;
  decision_core_hash: string | null;
}

/** Verifies an `edr/` tree (`YYYY/MM/DD/<decision_core_hash>.json`); never throws for a bad record. */
export async function verifyTree(edrDir: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const root = resolve(edrDir);
  const files = await listJson(root);
  const findings: VerifyFinding[] = [];
  const entries: Entry[] = [];
  let done = 0;
  for (const path of files) {
    entries.push(await checkFile(root, path, findings));
    options.onProgress?.(++done, files.length);
  }

  const byDay = new Map<string, Entry[]>();
  for (const entry of entries) {
    if (entry.day === null || entry.record === null || entry.wrongDay) continue;
    const list = byDay.get(entry.day) ?? [];
    list.push(entry);
    byDay.set(entry.day, list);
  }
  const walDir = options.walDir === undefined ? join(dirname(root), "wal") : options.walDir;
  const days = new Set<string>(byDay.keys());
  const walDays = walDir === null ? new Map<string, WalEntry[]>() : await readWalDays(walDir);
  for (const day of walDays.keys()) days.add(day);
  for (const day of [...days].sort()) {
    checkChain(day, byDay.get(day) ?? [], walDays.get(day) ?? null, findings);
  }
  return { ok: findings.length === 0, records: files.length, days: days.size, findings };
}

async function listJson(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    const names: Deno.DirEntry[] = [];
    try {
      for await (const entry of Deno.readDir(dir)) names.push(entry);
    } catch (error) {
      if (error instanceof Deno.errors.NotFound && dir === root) return;
      throw error;
    }
    names.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    for (const entry of names) {
      const path = join(dir, entry.name);
      if (entry.isDirectory) await walk(path);
      else if (entry.name.endsWith(".json")) out.push(path);
    }
  };
  await walk(root);
  return out;
}

async function checkFile(root: string, path: string, findings: VerifyFinding[]): Promise<Entry> {
  const file = relative(root, path).split(sep).join("/");
  const parts = file.split("/");
  const day =
    parts.length === 4 && /^\d{4}$/.test(parts[0]) && /^\d{2}$/.test(parts[1]) && /^\d{2}$/.test(parts[2])
      ? parts.slice(0, 3).join("/")
      : null;
  const entry: Entry = { file, day, record: null };
  const add = (kind: FindingKind, message: string, sequence: number | null = null) =>
    findings.push({ kind, day, file, sequence, message });

  let parsed: unknown;
  try {
    parsed = JSON.parse(await Deno.readTextFile(path));
  } catch {
    add("unreadable", `${file} cannot be read as JSON`);
    return entry;
  }
  const validity = validateEdr(parsed);
  if (!validity.valid) {
    const errors = (validity as { errors: string[] }).errors.slice(0, 3).join("; ");
    add("invalid", `${file} does not match EDR_v1.0.0: ${errors}`);
    // A schema-invalid record may still carry a sequence: keep it for the chain if it looks usable.
    const maybe = parsed as Partial<EdrRecord>;
    if (maybe !== null && typeof maybe === "object" && Number.isInteger(maybe.sequence)) {
      entry.record = maybe as EdrRecord;
    }
    return entry;
  }
  const record = parsed as EdrRecord;
  entry.record = record;
  const edrHash = computeEdrHash(record);
  if (edrHash !== record.edr_hash) {
    add("altered", `${file} was altered: its edr_hash does not match its content`, record.sequence);
  }
  const coreHash = computeDecisionCoreHash(record);
  if (coreHash !== record.decision_core_hash) {
    add(
      "altered",
      `${file} was altered: its decision_core_hash does not match its decision core`,
      record.sequence,
    );
  }
  const expectedDay = dayPathOf(record.timestamp);
  if (day === null || expectedDay !== day) {
    add(
      "misplaced",
      `${file} is in the wrong folder: its timestamp puts it under ${expectedDay ?? "no valid day"}`,
      record.sequence,
    );
    entry.wrongDay = true;
  }
  if (basename(file, ".json") !== record.decision_core_hash) {
    // Whether this is a copy is settled once the whole day is known (checkChain).
    entry.copyOf = "";
  }
  return entry;
}

function checkChain(day: string, entries: Entry[], wal: WalEntry[] | null, findings: VerifyFinding[]): void {
  const add = (kind: FindingKind, file: string | null, sequence: number | null, message: string) =>
    findings.push({ kind, day, file, sequence, message });

  // Misnamed files: a copy of a correctly named record is a duplicate; anything else is misplaced.
  const byName = new Map(entries.map((e) => [e.file, e]));
  const chained: Entry[] = [];
  for (const entry of entries) {
    if (entry.copyOf === undefined) {
      chained.push(entry);
      continue;
    }
    const record = entry.record!;
    const original = byName.get(`${day}/${record.decision_core_hash}.json`);
    if (original?.record?.edr_hash === record.edr_hash) {
      entry.copyOf = original.file;
      add("duplicate", entry.file, record.sequence, `${entry.file} is a duplicate of ${original.file}`);
    } else {
      add(
        "misplaced",
        entry.file,
        record.sequence,
        `${entry.file} is misnamed: its decision_core_hash is ${record.decision_core_hash}`,
      );
      chained.push(entry);
    }
  }

  const bySequence = new Map<number, Entry[]>();
  for (const entry of chained) {
    const sequence = entry.record!.sequence;
    const list = bySequence.get(sequence) ?? [];
    list.push(entry);
    bySequence.set(sequence, list);
  }
  for (const [sequence, list] of bySequence) {
    if (list.length > 1) {
      const names = list.map((e) => e.file).join(", ");
      for (const entry of list) {
        add("duplicate", entry.file, sequence, `sequence ${sequence} of ${day} is claimed by ${names}`);
      }
    }
  }

  const walBySequence = new Map<number, WalEntry>();
  for (const line of wal ?? []) if (line.sequence !== null) walBySequence.set(line.sequence, line);
  const known = chained.map((e) => e.record!.sequence).filter((s) => Number.isInteger(s) && s >= 1);
  const highest = Math.max(0, ...known, ...walBySequence.keys());
  const walNamed = (sequence: number) => {
    const line = walBySequence.get(sequence);
    return line?.decision_core_hash ? `${day}/${line.decision_core_hash}.json` : null;
  };
  for (const entry of chained) {
    const sequence = entry.record!.sequence;
    if (!Number.isInteger(sequence) || sequence < 1) {
      add("chain_broken", entry.file, null, `${entry.file} has no valid sequence`);
    }
  }
  for (let sequence = 1; sequence <= highest; sequence++) {
    if (bySequence.has(sequence)) continue;
    const name = walNamed(sequence);
    const beyond = sequence > Math.max(0, ...known);
    add(
      "missing",
      name,
      sequence,
      `${name ?? `the record with sequence ${sequence}`} of ${day} is missing` +
        (beyond ? " (the write-ahead log says it was written)" : ""),
    );
  }

  const hashes = new Map<string, Entry>();
  for (const entry of chained) hashes.set(entry.record!.edr_hash, entry);
  for (const [sequence, list] of bySequence) {
    if (list.length !== 1) continue;
    const entry = list[0];
    const prev = entry.record!.prev_edr_hash;
    if (sequence === 1) {
      if (prev !== null) {
        const pointsTo = hashes.get(prev);
        add(
          pointsTo ? "reordered" : "chain_broken",
          entry.file,
          sequence,
          `${entry.file} is sequence 1 of ${day} but links back to ${pointsTo?.file ?? "an unknown record"}`,
        );
      }
      continue;
    }
    const before = bySequence.get(sequence - 1);
    if (before === undefined || before.length !== 1) continue;
    const expected = before[0].record!.edr_hash;
    if (prev === expected) continue;
    const pointsTo = prev === null ? undefined : hashes.get(prev);
    if (pointsTo !== undefined) {
      add(
        "reordered",
        entry.file,
        sequence,
        `${entry.file} (sequence ${sequence}) links back to ${pointsTo.file} ` +
          `(sequence ${pointsTo.record!.sequence}) instead of ${before[0].file}`,
      );
    } else {
      add(
        "chain_broken",
        entry.file,
        sequence,
        `${entry.file} (sequence ${sequence}) does not link back to ${before[0].file}`,
      );
    }
  }

  // Each record must be the one the WAL committed under its sequence: this catches a record that was
  // rewritten with fresh hashes, and records whose sequence numbers were swapped and re-hashed.
  for (const [sequence, line] of walBySequence) {
    const list = bySequence.get(sequence);
    if (list === undefined || list.length !== 1 || line.edr_hash === null) continue;
    const entry = list[0];
    const record = entry.record!;
    if (record.edr_hash === line.edr_hash) continue;
    if (line.decision_core_hash !== null && line.decision_core_hash !== record.decision_core_hash) {
      add(
        "reordered",
        entry.file,
        sequence,
        `${entry.file} claims sequence ${sequence}, which the write-ahead log gave to ${walNamed(sequence)}`,
      );
    } else {
      add(
        "altered",
        entry.file,
        sequence,
        `${entry.file} differs from the record the write-ahead log committed under sequence ${sequence}`,
      );
    }
  }
}

/**
 * Reads `wal/<YYYY-MM-DD>.log` files (one JSON object per line; a torn last line is ignored) into
 * day folder → entries. Unknown line shapes contribute nothing rather than failing verification.
 */
export async function readWalDays(walDir: string): Promise<Map<string, WalEntry[]>> {
  const days = new Map<string, WalEntry[]>();
  let listing: Deno.DirEntry[] = [];
  try {
    for await (const entry of Deno.readDir(walDir)) listing.push(entry);
  } catch {
    return days;
  }
  listing = listing.filter((e) => e.isFile && /^\d{4}-\d{2}-\d{2}\.log$/.test(e.name));
  for (const entry of listing) {
    const day = entry.name.slice(0, 10).replaceAll("-", "/");
    // Line by line: a day's log can be far larger than memory should hold, and only identities are kept.
    const entries: WalEntry[] = [];
    const decoder = new TextDecoder();
    await scanWalLines(join(walDir, entry.name), (line) => {
      const walEntry = walEntryOf(decoder.decode(line));
      if (walEntry) entries.push(walEntry);
    });
    days.set(day, entries);
  }
  return days;
}

/** The record identity one WAL line carries, or null for a blank or unparsable line. */
function walEntryOf(line: string): WalEntry | null {
  if (line.trim() === "") return null;
  let value: unknown;
  try {
    value = JSON.parse(line);
  } catch {
    return null;
  }
  if (value === null || typeof value !== "object") return null;
  const o = value as Record<string, unknown>;
  const inner = (o.record !== null && typeof o.record === "object" ? o.record : o) as Record<string, unknown>;
  return {
    sequence: typeof inner.sequence === "number" ? inner.sequence : null,
    edr_hash: typeof inner.edr_hash === "string" ? inner.edr_hash : null,
    decision_core_hash: typeof inner.decision_core_hash === "string" ? inner.decision_core_hash : null,
  };
}
