/**
 * The chain check of one UTC day for `verifyTree`, in memory bounded by the day's real size. Hashes are
 * kept as bytes in flat typed arrays (about 200 bytes per record, whatever the record's size). Sequences
 * up to the day's record count (its files or its write-ahead log lines, whichever is more) index the arrays
 * directly; a sequence beyond it, which only a gap or a forgery produces, gets a slot of its own, and the
 * gap before it is one finding, so a forged huge sequence costs no more than any other record.
 */
import type { Checkpoint } from "../edr/mod.ts";
import type { FindingKind, VerifyFinding } from "./verify.ts";

/** What one record file contributes to its day's chain. */
export interface ChainEntry {
  /** The file, relative to the `edr/` folder. */
  file: string;
  sequence: unknown;
  edrHash: unknown;
  prevHash: unknown;
  coreHash: unknown;
  /** The file name is not its `decision_core_hash`: a copy, or a misnamed record. */
  misnamed: boolean;
}

/** The record identity one WAL line carries. */
export interface WalLine {
  sequence: number | null;
  edr_hash: string | null;
  decision_core_hash: string | null;
}

const EDR_OK = 1;
const PREV_OK = 2;
const PREV_NULL = 4;
const CORE_OK = 8;
const HASH = 32;
const HEX_DIGITS = "0123456789abcdef";
const NIBBLE = new Int8Array(128).fill(-1);
for (let i = 0; i < 16; i++) NIBBLE[HEX_DIGITS.charCodeAt(i)] = i;

/** Writes a 64-hex hash into `to` at `at`; false (nothing usable written) for anything else. */
function putHash(to: Uint8Array, at: number, hex: unknown): boolean {
  if (typeof hex !== "string" || hex.length !== 64) return false;
  for (let i = 0; i < HASH; i++) {
    const hi = NIBBLE[hex.charCodeAt(2 * i)] ?? -1;
    const lo = NIBBLE[hex.charCodeAt(2 * i + 1)] ?? -1;
    if (hi < 0 || lo < 0) return false;
    to[at + i] = (hi << 4) | lo;
  }
  return true;
}

function hashAt(from: Uint8Array, at: number): string {
  let out = "";
  for (let i = 0; i < HASH; i++) out += HEX_DIGITS[from[at + i] >> 4] + HEX_DIGITS[from[at + i] & 15];
  return out;
}

function sameHash(a: Uint8Array, ai: number, b: Uint8Array, bi: number): boolean {
  for (let i = 0; i < HASH; i++) if (a[ai + i] !== b[bi + i]) return false;
  return true;
}

/** Per-sequence columns, grown by doubling (index 0 is unused; sequences start at 1). */
class Columns {
  size = 0;
  count = new Uint8Array(0);
  flags = new Uint8Array(0);
  edr = new Uint8Array(0);
  prev = new Uint8Array(0);
  core = new Uint8Array(0);
  walFlags = new Uint8Array(0);
  walEdr = new Uint8Array(0);
  walCore = new Uint8Array(0);

  ensure(n: number): void {
    if (n < this.size) return;
    let size = Math.max(1024, this.size);
    while (size <= n) size *= 2;
    const grow = (old: Uint8Array, width: number) => {
      const next = new Uint8Array(size * width);
      next.set(old);
      return next;
    };
    this.count = grow(this.count, 1);
    this.flags = grow(this.flags, 1);
    this.edr = grow(this.edr, HASH);
    this.prev = grow(this.prev, HASH);
    this.core = grow(this.core, HASH);
    this.walFlags = grow(this.walFlags, 1);
    this.walEdr = grow(this.walEdr, HASH);
    this.walCore = grow(this.walCore, HASH);
    this.size = size;
  }
}

/** Collects one day's WAL lines and record files, then reports what is wrong with its chain. */
export class DayChain {
  readonly day: string;
  /** Record files that joined the chain (valid ones in their own day's folder, or invalid with a sequence). */
  chained = 0;
  readonly #add: (finding: VerifyFinding) => void;
  readonly #cols = new Columns();
  readonly #fileCount: number;
  #walLines = 0;
  /** Sequences up to this index the columns directly; it is max(record files, WAL lines) once the WAL is read. */
  #limit: number;
  /** Slots of sequences beyond `#limit`, allocated after it. */
  #overflow = new Map<number, number>();
  #nextOverflow = 0;
  #highestFile = 0;
  #highestWal = 0;
  /** WAL lines claiming a sequence beyond their own line number, placed once the log's length is known. */
  #walAhead: WalLine[] = [];
  #misnamed: ChainEntry[] = [];
  /** Names of slots whose file is not `<day>/<decision_core_hash>.json`. */
  #names = new Map<number, string>();
  /** Every file of a sequence more than one file claims. */
  #claims = new Map<number, string[]>();
  readonly #expect: Set<string>;
  readonly #found: Set<string>;

  /** A day (`YYYY/MM/DD`) with `fileCount` record files; `expect` hashes seen go into `found`. */
  constructor(
    day: string,
    fileCount: number,
    options: { add: (finding: VerifyFinding) => void; expect: Set<string>; found: Set<string> },
  ) {
    this.day = day;
    this.#fileCount = fileCount;
    this.#limit = fileCount;
    this.#add = options.add;
    this.#expect = options.expect;
    this.#found = options.found;
    this.#cols.ensure(fileCount);
  }

  #finding(kind: FindingKind, file: string | null, sequence: number | null, message: string): void {
    this.#add({ kind, day: this.day, file, sequence, message });
  }

  /** The slot of a sequence, or -1 when nothing claims it. */
  #slotOf(s: number): number {
    return s <= this.#limit ? s : this.#overflow.get(s) ?? -1;
  }

  #claimSlot(s: number): number {
    if (s <= this.#limit) {
      this.#cols.ensure(s);
      return s;
    }
    let slot = this.#overflow.get(s);
    if (slot === undefined) {
      slot = this.#nextOverflow++;
      this.#cols.ensure(slot);
      this.#overflow.set(s, slot);
    }
    return slot;
  }

  /** Takes the WAL's lines in order (`line` counts from 1); call `endWal` after the last, even with no WAL. */
  addWalLine(line: number, entry: WalLine): void {
    this.#walLines = line;
    if (line > this.#limit) this.#limit = line;
    const s = entry.sequence;
    if (s === null || !Number.isSafeInteger(s) || s < 1) return;
    // The log's length is not known yet, but a sequence up to the line's own number is within it.
    if (s > line) this.#walAhead.push(entry);
    else this.#placeWal(s, entry);
  }

  #placeWal(s: number, entry: WalLine): void {
    const cols = this.#cols;
    const slot = this.#claimSlot(s);
    let flags = 16;
    if (putHash(cols.walEdr, slot * HASH, entry.edr_hash)) flags |= EDR_OK;
    if (putHash(cols.walCore, slot * HASH, entry.decision_core_hash)) flags |= CORE_OK;
    cols.walFlags[slot] = flags;
    if (s > this.#highestWal) this.#highestWal = s;
    if (this.#expect.has(entry.edr_hash ?? "")) this.#found.add(entry.edr_hash!);
  }

  /** Ends the WAL: the direct range is now max(record files, WAL lines). */
  endWal(): void {
    this.#limit = Math.max(this.#fileCount, this.#walLines);
    this.#nextOverflow = this.#limit + 1;
    for (const entry of this.#walAhead) this.#placeWal(entry.sequence!, entry);
    this.#walAhead = [];
  }

  /** Takes one record file of the day (a valid, correctly placed one or a schema-invalid one with a sequence). */
  addFile(entry: ChainEntry): void {
    this.chained++;
    const s = entry.sequence;
    if (typeof s !== "number" || !Number.isSafeInteger(s) || s < 1) {
      this.#finding("chain_broken", entry.file, null, `${entry.file} has no valid sequence`);
      return;
    }
    if (entry.misnamed) {
      // Whether it is a copy of a correctly named record is known once the whole day is.
      this.#misnamed.push(entry);
      return;
    }
    this.#place(s, entry);
  }

  #place(s: number, entry: ChainEntry): void {
    const cols = this.#cols;
    const slot = this.#claimSlot(s);
    if (typeof entry.edrHash === "string" && this.#expect.has(entry.edrHash)) this.#found.add(entry.edrHash);
    if (cols.count[slot] > 0) {
      const claims = this.#claims.get(s) ?? [this.#nameOf(slot)];
      claims.push(entry.file);
      this.#claims.set(s, claims);
      if (cols.count[slot] < 255) cols.count[slot]++;
      return;
    }
    cols.count[slot] = 1;
    let flags = 0;
    if (putHash(cols.edr, slot * HASH, entry.edrHash)) flags |= EDR_OK;
    if (entry.prevHash === null) flags |= PREV_NULL;
    else if (putHash(cols.prev, slot * HASH, entry.prevHash)) flags |= PREV_OK;
    if (putHash(cols.core, slot * HASH, entry.coreHash)) flags |= CORE_OK;
    cols.flags[slot] = flags;
    if (!(flags & CORE_OK) || entry.file !== `${this.day}/${entry.coreHash}.json`) {
      this.#names.set(slot, entry.file);
    }
    if (s > this.#highestFile) this.#highestFile = s;
  }

  #nameOf(slot: number): string {
    return this.#names.get(slot) ?? `${this.day}/${hashAt(this.#cols.core, slot * HASH)}.json`;
  }

  #walNamed(slot: number): string | null {
    const cols = this.#cols;
    return slot >= 0 && cols.walFlags[slot] & CORE_OK
      ? `${this.day}/${hashAt(cols.walCore, slot * HASH)}.json`
      : null;
  }

  /** Bytes the day's hash columns take: what verify's memory grows with (see docs/edr-format.md). */
  get bytes(): number {
    return this.#cols.size * (3 + 5 * HASH);
  }

  /** The highest sequence the files or the WAL hold (0 for none). */
  get highest(): number {
    return Math.max(this.#highestFile, this.#highestWal);
  }

  /** Every claimed sequence in order with its slot (direct ones, then those beyond the day's count). */
  *#claimed(): Generator<[number, number]> {
    const cols = this.#cols;
    const direct = Math.min(this.#limit, this.highest);
    for (let s = 1; s <= direct; s++) if (cols.count[s] > 0 || cols.walFlags[s]) yield [s, s];
    const beyond = [...this.#overflow.keys()].sort((a, b) => a - b);
    for (const s of beyond) yield [s, this.#overflow.get(s)!];
  }

  /** Reports duplicates, gaps, broken links and records that are not the ones the WAL committed. */
  finish(): void {
    const cols = this.#cols;
    const day = this.day;
    for (const entry of this.#misnamed) {
      const s = entry.sequence as number;
      const slot = this.#slotOf(s);
      const scratch = new Uint8Array(2 * HASH);
      const same = slot >= 0 && cols.count[slot] > 0 && cols.flags[slot] & EDR_OK &&
        cols.flags[slot] & CORE_OK && !this.#names.has(slot) &&
        putHash(scratch, 0, entry.edrHash) && putHash(scratch, HASH, entry.coreHash) &&
        sameHash(scratch, 0, cols.edr, slot * HASH) && sameHash(scratch, HASH, cols.core, slot * HASH);
      if (same) {
        this.#finding("duplicate", entry.file, s, `${entry.file} is a duplicate of ${this.#nameOf(slot)}`);
        continue;
      }
      this.#finding(
        "misplaced",
        entry.file,
        s,
        `${entry.file} is misnamed: its decision_core_hash is ${entry.coreHash}`,
      );
      this.#place(s, entry);
    }
    this.#misnamed = [];

    for (const [s, names] of this.#claims) {
      for (const file of names) {
        this.#finding("duplicate", file, s, `sequence ${s} of ${day} is claimed by ${names.join(", ")}`);
      }
    }

    this.#checkGaps();
    this.#checkLinks();

    // Each record must be the one the WAL committed under its sequence: this catches a record that was
    // rewritten with fresh hashes, and records whose sequence numbers were swapped and re-hashed.
    for (const [s, slot] of this.#claimed()) {
      const wal = cols.walFlags[slot];
      if (!(wal & EDR_OK) || cols.count[slot] !== 1) continue;
      if (cols.flags[slot] & EDR_OK && sameHash(cols.edr, slot * HASH, cols.walEdr, slot * HASH)) continue;
      const file = this.#nameOf(slot);
      const coreDiffers = wal & CORE_OK &&
        (!(cols.flags[slot] & CORE_OK) || !sameHash(cols.core, slot * HASH, cols.walCore, slot * HASH));
      if (coreDiffers) {
        this.#finding(
          "reordered",
          file,
          s,
          `${file} claims sequence ${s}, which the write-ahead log gave to ${this.#walNamed(slot)}`,
        );
      } else {
        this.#finding(
          "altered",
          file,
          s,
          `${file} differs from the record the write-ahead log committed under sequence ${s}`,
        );
      }
    }
  }

  /** Missing records: each one by name up to the day's count, a run beyond it as one finding. */
  #checkGaps(): void {
    const cols = this.#cols;
    const day = this.day;
    const missing = (s: number, slot: number) => {
      const name = this.#walNamed(slot);
      this.#finding(
        "missing",
        name,
        s,
        `${name ?? `the record with sequence ${s}`} of ${day} is missing` +
          (s > this.#highestFile ? " (the write-ahead log says it was written)" : ""),
      );
    };
    let last = 0;
    for (const [s, slot] of this.#claimed()) {
      if (s - last > 1) {
        // A run before a claimed sequence: within the day's count each is named; beyond it, the run is
        // as long as the claim says, so it is one finding (a forged huge sequence must not loop).
        let t = last + 1;
        for (; t < s && t <= this.#limit; t++) missing(t, t);
        if (t < s) {
          const who = cols.count[slot] > 0
            ? this.#nameOf(slot)
            : `a line of wal/${day.replaceAll("/", "-")}.log`;
          this.#finding(
            "missing",
            null,
            t,
            `the ${s - t} record(s) with sequences ${t} to ${
              s - 1
            } of ${day} are missing, yet ${who} claims ` +
              `sequence ${s}, beyond the ${this.#limit} record(s) the day has: its sequence is forged, or ` +
              `those records were deleted`,
          );
        }
      }
      if (cols.count[slot] === 0) missing(s, slot);
      last = s;
    }
  }

  #checkLinks(): void {
    const cols = this.#cols;
    const day = this.day;
    // Broken links are rare; what a broken link points to is looked up once, over the whole day.
    const broken: Array<[number, number]> = [];
    for (const [s, slot] of this.#claimed()) {
      if (cols.count[slot] !== 1) continue;
      const flags = cols.flags[slot];
      if (s === 1) {
        if (!(flags & PREV_NULL)) broken.push([s, slot]);
        continue;
      }
      const before = this.#slotOf(s - 1);
      if (before < 0 || cols.count[before] !== 1) continue;
      const linked = flags & PREV_OK && cols.flags[before] & EDR_OK &&
        sameHash(cols.prev, slot * HASH, cols.edr, before * HASH);
      if (!linked) broken.push([s, slot]);
    }
    if (broken.length === 0) return;
    const wanted = new Map<string, [number, number] | null>();
    for (const [, slot] of broken) {
      if (cols.flags[slot] & PREV_OK) wanted.set(hashAt(cols.prev, slot * HASH), null);
    }
    for (const [t, slot] of this.#claimed()) {
      if (cols.count[slot] === 0 || !(cols.flags[slot] & EDR_OK)) continue;
      const hex = hashAt(cols.edr, slot * HASH);
      if (wanted.has(hex)) wanted.set(hex, [t, slot]);
    }
    for (const [s, slot] of broken) {
      const file = this.#nameOf(slot);
      const target = cols.flags[slot] & PREV_OK ? wanted.get(hashAt(cols.prev, slot * HASH)) ?? null : null;
      const pointsTo = target === null ? null : this.#nameOf(target[1]);
      if (s === 1) {
        this.#finding(
          pointsTo ? "reordered" : "chain_broken",
          file,
          s,
          `${file} is sequence 1 of ${day} but links back to ${pointsTo ?? "an unknown record"}`,
        );
        continue;
      }
      const before = this.#nameOf(this.#slotOf(s - 1));
      if (target !== null) {
        this.#finding(
          "reordered",
          file,
          s,
          `${file} (sequence ${s}) links back to ${pointsTo} (sequence ${target[0]}) instead of ${before}`,
        );
      } else {
        this.#finding("chain_broken", file, s, `${file} (sequence ${s}) does not link back to ${before}`);
      }
    }
  }

  /**
   * Checks a checkpoint against the day: the record it counted last must still be there under its
   * sequence, as a file or a WAL line, with the checkpointed `edr_hash`.
   */
  checkCheckpoint(checkpoint: Checkpoint, where: string): void {
    const cols = this.#cols;
    const s = checkpoint.sequence;
    const want = new Uint8Array(HASH);
    putHash(want, 0, checkpoint.edr_hash);
    const slot = this.#slotOf(s);
    const hasFile = slot >= 0 && slot < cols.size && cols.count[slot] > 0;
    const hasWal = slot >= 0 && slot < cols.size && (cols.walFlags[slot] & 16) !== 0;
    const fileMatches = hasFile && cols.flags[slot] & EDR_OK && sameHash(cols.edr, slot * HASH, want, 0);
    const walMatches = hasWal && cols.walFlags[slot] & EDR_OK && sameHash(cols.walEdr, slot * HASH, want, 0);
    if (fileMatches || walMatches) return;
    const head = checkpoint.edr_hash.slice(0, 12);
    if (!hasFile && !hasWal) {
      this.#finding(
        "truncated",
        null,
        s,
        `${where} (${checkpoint.at}) counted ${s} record(s) of ${this.day} ending at ${head}…, but the ` +
          `record with sequence ${s} is gone from the files and the write-ahead log: records were deleted ` +
          `after it; restore them from a backup`,
      );
      return;
    }
    const file = hasFile ? this.#nameOf(slot) : this.#walNamed(slot);
    this.#finding(
      "rechained",
      file,
      s,
      `the record under sequence ${s} of ${this.day}${file ? ` (${file})` : ""} is not the one ${where} ` +
        `(${checkpoint.at}) anchored (${head}…): the chain was rewritten after it; restore it from a backup`,
    );
  }
}
