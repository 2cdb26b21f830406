/**
 * Verification of an EDR tree: every record against the schema and its own hashes, its place on disk,
 * each day's chain (sequence 1..n, `prev_edr_hash` links, the write-ahead log), and the checkpoints the
 * router signed of each day's head. Every finding names the file it is about, so an operator knows which
 * record to restore. It streams: one day at a time, one file at a time, with memory bounded by the
 * largest day (see verify_day.ts), so a million records a day verify like a thousand.
 */
import { basename, dirname, join, relative, resolve, sep } from "node:path";
import {
  type Checkpoint,
  checkpointSignatureHolds,
  computeDecisionCoreHash,
  computeEdrHash,
  type EdrRecord,
  parseCheckpoint,
  scanWalLines,
  UNSIGNED,
  validateEdr,
} from "../edr/mod.ts";
import { dayPathOf } from "./paths.ts";
import { type ChainEntry, DayChain, type WalLine } from "./verify_day.ts";

/** What kind of damage a finding reports. */
export type FindingKind =
  | "unreadable"
  | "invalid"
  | "altered"
  | "misplaced"
  | "duplicate"
  | "missing"
  | "reordered"
  | "chain_broken"
  | "wal_missing"
  | "truncated"
  | "rechained"
  | "checkpoint_invalid";

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
  /** Checkpoint lines checked against the chains. */
  checkpoints: number;
  /** Signed checkpoint lines whose signature was not checked, because no key was given. */
  signatures_unchecked: number;
  /** Bytes the largest day's chain columns took (about 163 per record of that day; see docs/edr-format.md). */
  peak_day_bytes: number;
  findings: VerifyFinding[];
  /** Findings beyond `maxFindings`, counted but not listed. */
  findings_omitted: number;
}

/** Options of `verifyTree`. */
export interface VerifyOptions {
  /** The write-ahead log folder (`<artifacts>/wal`); default: `wal/` next to the `edr/` folder; null: none. */
  walDir?: string | null;
  /** The checkpoints folder; default: `checkpoints/` next to the `edr/` folder; null: none. */
  checkpointsDir?: string | null;
  /** The HMAC secret checkpoints were signed with; without it their signatures are not checked. */
  checkpointSecret?: string;
  /** `edr_hash`es of heads taken earlier (e.g. from `GET /v1/edr/head`) that must still be in a chain. */
  expectHeads?: string[];
  /** Most findings listed (default 10,000); the rest are counted in `findings_omitted`. */
  maxFindings?: number;
  /** Called after each file with (done, total), e.g. to draw a progress bar. */
  onProgress?: (done: number, total: number) => void;
  /**
   * Only this UTC day (`YYYY-MM-DD`): its folder, its write-ahead log and its checkpoints. Other days and
   * record files outside any day folder are not looked at, so a day is checked in the time its own records
   * take.
   */
  day?: string;
}

/** The tree's shape: day folders with their record-file counts, and record files outside any day folder. */
interface TreeMap {
  days: Map<string, { path: string; files: number }>;
  stray: string[];
  total: number;
}

const DAY_PARTS = [/^\d{4}$/, /^\d{2}$/, /^\d{2}$/];

/**
 * Verifies an `edr/` tree (`YYYY/MM/DD/<decision_core_hash>.json`); never throws for a bad record, only
 * when the tree itself cannot be read (a folder or log it may not open), which is verify's own failure.
 */
export async function verifyTree(edrDir: string, options: VerifyOptions = {}): Promise<VerifyResult> {
  const root = resolve(edrDir);
  const walDir = options.walDir === undefined ? join(dirname(root), "wal") : options.walDir;
  const checkpointsDir = options.checkpointsDir === undefined
    ? join(dirname(root), "checkpoints")
    : options.checkpointsDir;
  const maxFindings = options.maxFindings ?? 10_000;
  const result: VerifyResult = {
    ok: true,
    records: 0,
    days: 0,
    checkpoints: 0,
    signatures_unchecked: 0,
    peak_day_bytes: 0,
    findings: [],
    findings_omitted: 0,
  };
  const add = (finding: VerifyFinding) => {
    if (result.findings.length < maxFindings) result.findings.push(finding);
    else result.findings_omitted++;
  };
  // Days are keyed by their folder, YYYY/MM/DD.
  const only = options.day?.replaceAll("-", "/");
  const tree = only === undefined ? await mapTree(root) : mapDay(root, only);
  const inScope = (days: Set<string>) =>
    only === undefined ? days : new Set([...days].filter((d) => d === only));
  const walDays = walDir === null
    ? new Set<string>()
    : inScope(await daysOfFolder(walDir, /^(\d{4}-\d{2}-\d{2})\.log$/));
  const checkpointDays = checkpointsDir === null
    ? new Set<string>()
    : inScope(await daysOfFolder(checkpointsDir, /^(\d{4}-\d{2}-\d{2})\.jsonl$/));
  const expect = new Set(options.expectHeads ?? []);
  const found = new Set<string>();
  let done = 0;
  const progress = () => {
    done++;
    options.onProgress?.(done, tree.total);
  };

  for (const path of tree.stray) {
    checkFile(root, path, null, add);
    progress();
  }
  const days = new Set([...tree.days.keys(), ...walDays, ...checkpointDays]);
  for (const day of [...days].sort()) {
    const folder = tree.days.get(day);
    const dash = day.replaceAll("/", "-");
    const chain = new DayChain(day, folder?.files ?? 0, { add, expect, found });
    if (walDays.has(day)) await readWal(join(walDir!, `${dash}.log`), chain);
    chain.endWal();
    if (folder) {
      // File findings come sorted by name; the folder lists in whatever order the file system keeps.
      const fileFindings: VerifyFinding[] = [];
      // Deno lists a folder whole (about 450 bytes an entry); keeping only the names lets that go at once.
      const names: string[] = [];
      for (const e of listFolder(folder.path)) {
        if ((e.isFile || e.isSymlink) && e.name.endsWith(".json")) names.push(e.name);
      }
      for (const name of names) {
        const entry = checkFile(root, join(folder.path, name), day, (f) => fileFindings.push(f));
        if (entry) chain.addFile(entry);
        progress();
      }
      fileFindings.sort((a, b) => a.file! < b.file! ? -1 : a.file! > b.file! ? 1 : 0);
      for (const finding of fileFindings) add(finding);
    }
    chain.finish();
    result.peak_day_bytes = Math.max(result.peak_day_bytes, chain.bytes);
    if (walDir !== null && !walDays.has(day) && chain.chained > 0) {
      add({
        kind: "wal_missing",
        day,
        file: null,
        sequence: null,
        message: `${day} has ${chain.chained} record file(s) but no write-ahead log wal/${dash}.log, so a ` +
          `deleted last record cannot be told apart; restore the log from a backup`,
      });
    }
    if (checkpointDays.has(day)) {
      await checkCheckpoints(join(checkpointsDir!, `${dash}.jsonl`), dash, chain, options, result, add);
    }
  }
  for (const hash of expect) {
    if (found.has(hash)) continue;
    add({
      kind: "truncated",
      day: null,
      file: null,
      sequence: null,
      message: `no record has the edr_hash ${hash} given with --expect-head: the chain that held it was ` +
        `cut or rewritten; restore the day from a backup`,
    });
  }
  result.records = done;
  result.days = days.size;
  result.ok = result.findings.length === 0 && result.findings_omitted === 0;
  return result;
}

/** Finds the day folders (following symlinked ones) and record files elsewhere, counting files per day. */
async function mapTree(root: string): Promise<TreeMap> {
  const map: TreeMap = { days: new Map(), stray: [], total: 0 };
  const walk = async (dir: string, depth: number, parts: string[]) => {
    let entries: Deno.DirEntry[];
    try {
      entries = [...listFolder(dir)];
    } catch (error) {
      if (error instanceof Deno.errors.NotFound && dir === root) return;
      throw error;
    }
    entries.sort((a, b) => a.name < b.name ? -1 : a.name > b.name ? 1 : 0);
    for (const entry of entries) {
      const path = join(dir, entry.name);
      const isDir = entry.isDirectory || (entry.isSymlink && isFolder(path));
      const dayLevel = depth < 3 && parts.length === depth && DAY_PARTS[depth].test(entry.name);
      if (isDir && dayLevel && depth === 2) {
        const day = [...parts, entry.name].join("/");
        let files = 0;
        for (const file of listFolder(path)) {
          if ((file.isFile || file.isSymlink) && file.name.endsWith(".json")) files++;
          else if (file.isDirectory) await walk(join(path, file.name), 4, []);
        }
        map.days.set(day, { path, files });
        map.total += files;
      } else if (isDir) {
        await walk(path, depth + 1, dayLevel ? [...parts, entry.name] : []);
      } else if (entry.name.endsWith(".json")) {
        map.stray.push(path);
        map.total++;
      }
    }
  };
  await walk(root, 0, []);
  return map;
}

/** One day's folder (`YYYY/MM/DD` under `root`) with its record-file count; empty when it does not exist. */
function mapDay(root: string, day: string): TreeMap {
  const map: TreeMap = { days: new Map(), stray: [], total: 0 };
  const path = join(root, ...day.split("/"));
  if (!isFolder(path)) return map;
  let files = 0;
  for (const file of listFolder(path)) {
    if ((file.isFile || file.isSymlink) && file.name.endsWith(".json")) files++;
  }
  map.days.set(day, { path, files });
  map.total = files;
  return map;
}

/** Lists a folder; an error names the folder and says what to do. */
function listFolder(path: string): Iterable<Deno.DirEntry> {
  try {
    return Deno.readDirSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) throw error;
    throw new Error(`cannot read the folder ${path} (${(error as Error).message}); make it readable`, {
      cause: error,
    });
  }
}

function isFolder(path: string): boolean {
  try {
    return Deno.statSync(path).isDirectory;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw new Error(`cannot read the folder ${path} (${(error as Error).message}); make it readable`, {
      cause: error,
    });
  }
}

/** The `YYYY/MM/DD` days whose files in `dir` match `pattern`; none when the folder does not exist. */
async function daysOfFolder(dir: string, pattern: RegExp): Promise<Set<string>> {
  const days = new Set<string>();
  try {
    for await (const entry of Deno.readDir(dir)) {
      const match = pattern.exec(entry.name);
      if (match) days.add(match[1].replaceAll("-", "/"));
    }
  } catch (error) {
    if (error instanceof Deno.errors.NotFound || error instanceof Deno.errors.NotADirectory) return days;
    throw new Error(`cannot read the folder ${dir} (${(error as Error).message}); make it readable`, {
      cause: error,
    });
  }
  return days;
}

/** Streams a day's WAL into its chain (one JSON object per line; a torn last line is ignored). */
async function readWal(path: string, chain: DayChain): Promise<void> {
  const decoder = new TextDecoder();
  let line = 0;
  try {
    await scanWalLines(path, (bytes) => {
      const entry = walLineOf(decoder.decode(bytes));
      if (entry === undefined) return;
      chain.addWalLine(++line, entry ?? { sequence: null, edr_hash: null, decision_core_hash: null });
    });
  } catch (error) {
    throw new Error(
      `cannot read the write-ahead log ${path} (${(error as Error).message}); make it readable`,
      {
        cause: error,
      },
    );
  }
}

/** The record identity one WAL line carries; null for an unparsable line, undefined for a blank one. */
function walLineOf(line: string): WalLine | null | undefined {
  if (line.trim() === "") return undefined;
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

/** Checks one record file; returns what it gives its day's chain, or null when it has no place in one. */
function checkFile(
  root: string,
  path: string,
  folderDay: string | null,
  add: (finding: VerifyFinding) => void,
): ChainEntry | null {
  const file = relative(root, path).split(sep).join("/");
  let parsed: unknown;
  try {
    parsed = JSON.parse(Deno.readTextFileSync(path));
  } catch {
    add({
      kind: "unreadable",
      day: folderDay,
      file,
      sequence: null,
      message: `${file} cannot be read as JSON`,
    });
    return null;
  }
  return checkRecord(parsed, { file, day: folderDay, name: basename(file, ".json") }, add);
}

/** Where a record was found, for `checkRecord`: its label in findings, its day, and the name it is kept under. */
export interface RecordPlace {
  /** How findings name it: a path under `edr/`, or a database row's equivalent. */
  file: string;
  /** The day (`YYYY/MM/DD`) it is filed under; null when it sits in no day. */
  day: string | null;
  /** The name it is kept under, which must be its `decision_core_hash`. */
  name: string;
}

/**
 * The checks every record gets wherever it is kept (a file, a database row): the EDR_v1.0.0 schema, its
 * own two hashes, and its day. Returns what it gives its day's chain, or null when it has no place in one.
 */
export function checkRecord(
  parsed: unknown,
  place: RecordPlace,
  add: (finding: VerifyFinding) => void,
): ChainEntry | null {
  const { file, day } = place;
  const finding = (kind: FindingKind, message: string, sequence: number | null = null) =>
    add({ kind, day, file, sequence, message });
  const validity = validateEdr(parsed);
  const entryOf = (r: Partial<EdrRecord>): ChainEntry => ({
    file,
    sequence: r.sequence,
    edrHash: r.edr_hash,
    prevHash: r.prev_edr_hash,
    coreHash: r.decision_core_hash,
    misnamed: place.name !== r.decision_core_hash,
  });
  if (!validity.valid) {
    const errors = (validity as { errors: string[] }).errors.slice(0, 3).join("; ");
    finding("invalid", `${file} does not match EDR_v1.0.0: ${errors}`);
    // A schema-invalid record may still carry a sequence: keep it for the chain if it looks usable.
    const maybe = parsed as Partial<EdrRecord>;
    if (day !== null && maybe !== null && typeof maybe === "object" && Number.isInteger(maybe.sequence)) {
      return entryOf(maybe);
    }
    return null;
  }
  const record = parsed as EdrRecord;
  if (computeEdrHash(record) !== record.edr_hash) {
    finding("altered", `${file} was altered: its edr_hash does not match its content`, record.sequence);
  }
  if (computeDecisionCoreHash(record) !== record.decision_core_hash) {
    finding(
      "altered",
      `${file} was altered: its decision_core_hash does not match its decision core`,
      record.sequence,
    );
  }
  const expectedDay = dayPathOf(record.timestamp);
  if (day === null || expectedDay !== day) {
    finding(
      "misplaced",
      `${file} is in the wrong folder: its timestamp puts it under ${expectedDay ?? "no valid day"}`,
      record.sequence,
    );
    // Kept out of that folder's chain: it belongs to another.
    return null;
  }
  return entryOf(record);
}

/** Checks a day's checkpoint lines: each well formed, signed by the key when one is given, and anchored. */
async function checkCheckpoints(
  path: string,
  dash: string,
  chain: DayChain,
  options: VerifyOptions,
  result: VerifyResult,
  add: (finding: VerifyFinding) => void,
): Promise<void> {
  const name = `checkpoints/${dash}.jsonl`;
  const decoder = new TextDecoder();
  const lines: Array<{ number: number; checkpoint: Checkpoint | string }> = [];
  let number = 0;
  try {
    await scanWalLines(path, (bytes) => {
      number++;
      const text = decoder.decode(bytes);
      if (text.trim() !== "") lines.push({ number, checkpoint: parseCheckpoint(text) });
    });
  } catch (error) {
    throw new Error(`cannot read the checkpoints ${path} (${(error as Error).message}); make it readable`, {
      cause: error,
    });
  }
  await checkCheckpointLines(lines, name, dash, chain, options, result, add);
}

/**
 * Checks checkpoint lines of one day (`dash`, `YYYY-MM-DD`) against its chain: each well formed, for that
 * day, signed by the key when one is given, and anchored. `name` says where the lines are kept.
 */
export async function checkCheckpointLines(
  lines: Array<{ number: number; checkpoint: Checkpoint | string }>,
  name: string,
  dash: string,
  chain: DayChain,
  options: Pick<VerifyOptions, "checkpointSecret">,
  result: Pick<VerifyResult, "checkpoints" | "signatures_unchecked">,
  add: (finding: VerifyFinding) => void,
): Promise<void> {
  const invalid = (line: number, why: string) =>
    add({
      kind: "checkpoint_invalid",
      day: chain.day,
      file: null,
      sequence: null,
      message: `line ${line} of ${name} is not a valid checkpoint: ${why}; ` +
        `compare it with the heads shipped from GET /v1/edr/head`,
    });
  for (const { number, checkpoint } of lines) {
    if (typeof checkpoint === "string") {
      invalid(number, checkpoint);
      continue;
    }
    if (checkpoint.day !== dash) {
      invalid(number, `it is for ${checkpoint.day}`);
      continue;
    }
    if (checkpoint.signature !== UNSIGNED) {
      if (options.checkpointSecret === undefined) {
        result.signatures_unchecked++;
      } else if (!await checkpointSignatureHolds(checkpoint, options.checkpointSecret)) {
        invalid(number, `its signature does not hold under the given key (key_id ${checkpoint.key_id})`);
        continue;
      }
    }
    result.checkpoints++;
    chain.checkCheckpoint(checkpoint, `the checkpoint on line ${number} of ${name}`);
  }
}
