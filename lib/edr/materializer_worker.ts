/**
 * Worker that creates the per-request EDR files and captured inputs from durable WAL lines. It reads the
 * lines back from the WAL (page cache) instead of being handed them, so the request thread keeps nothing
 * per record while files wait for a quiet moment. Sync file calls in a worker cost a fraction of async
 * ones (no thread hand-off per call). Each file is written to `tmp/`, hard-linked into place (never
 * replacing an existing file) and the temp name removed; no fsync, because the WAL is the durable copy.
 */

import { edrPathOn, inputPointerOf, walPathOn } from "./paths.ts";
import type { MaterializeReply, MaterializeRequest } from "./materializer_protocol.ts";

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<MaterializeRequest>) => void) | null;
  postMessage(message: MaterializeReply): void;
};

const encoder = new TextEncoder();
const decoder = new TextDecoder();
const NEWLINE = 0x0a;
const CLOSE_BRACE = 0x7d;
// A WAL line is `{"record":R}` or `{"input":I,"record":R}` (docs/edr-format.md). R is a canonical
// record: its keys are fixed by the schema and every string in it is escaped, so each key pattern
// below can only match the record's own top-level member.
const RECORD_ONLY = encoder.encode('{"record":');
const WITH_INPUT = encoder.encode('{"input":');
const RECORD_AFTER_INPUT = encoder.encode(',"record":');
const CORE_HASH_KEY = encoder.encode('"decision_core_hash":"');
const INPUT_POINTER_KEY = encoder.encode('"required_inputs_pointer":"inputs/');
const HEX64 = /^[0-9a-f]{64}$/;

const madeDirs = new Set<string>();
let counter = 0;

function matchesAt(bytes: Uint8Array, at: number, pattern: Uint8Array): boolean {
  if (at < 0 || at + pattern.length > bytes.length) return false;
  for (let i = 0; i < pattern.length; i++) if (bytes[at + i] !== pattern[i]) return false;
  return true;
}

function indexOfBytes(bytes: Uint8Array, pattern: Uint8Array, from: number, to: number): number {
  for (
    let at = bytes.indexOf(pattern[0], from);
    at !== -1 && at + pattern.length <= to;
    at = bytes.indexOf(pattern[0], at + 1)
  ) {
    if (matchesAt(bytes, at, pattern)) return at;
  }
  return -1;
}

function lastIndexOfBytes(bytes: Uint8Array, pattern: Uint8Array, from: number, to: number): number {
  for (let at = to - pattern.length; at >= from; at--) if (matchesAt(bytes, at, pattern)) return at;
  return -1;
}

/** The 64 hex digits right after `key` in `bytes[from, to)`, or null. */
function hashAfter(bytes: Uint8Array, key: Uint8Array, from: number, to: number): string | null {
  const at = indexOfBytes(bytes, key, from, to);
  if (at === -1) return null;
  const start = at + key.length;
  const hash = decoder.decode(bytes.subarray(start, start + 64));
  return HEX64.test(hash) ? hash : null;
}

function lstatOrNull(path: string): Deno.FileInfo | null {
  try {
    return Deno.lstatSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return null;
    throw error;
  }
}

/**
 * Creates `path` with `content` unless it exists; true when it wrote. With `checkFirst` (recovery, and
 * always for inputs), a file in place is kept only if its size is right: a crash can leave a linked file
 * whose data never reached the disk, and the WAL line is the durable copy of what it must hold.
 */
function createAtomically(
  tmpDir: string,
  path: string,
  content: Uint8Array,
  checkFirst: boolean,
  reply: MaterializeReply,
): boolean {
  const existing = checkFirst ? lstatOrNull(path) : null;
  if (existing?.isFile && existing.size === content.length) {
    reply.newestFileMs = Math.max(reply.newestFileMs, existing.mtime?.getTime() ?? Date.now());
    return false;
  }
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (!madeDirs.has(dir)) {
    Deno.mkdirSync(dir, { recursive: true });
    madeDirs.add(dir);
  }
  const tmp = `${tmpDir}/${Deno.pid}-w${++counter}.part`;
  Deno.writeFileSync(tmp, content, { createNew: true });
  try {
    if (existing === null) return linkInPlace(tmp, path);
    // Damaged: replaced from the WAL line. A failure here is an error to report, not a file to keep.
    Deno.renameSync(tmp, path);
    reply.repaired++;
    return true;
  } finally {
    try {
      Deno.removeSync(tmp);
    } catch { /* renamed away or never made */ }
  }
}

/** Hard-links `tmp` to `path` unless `path` exists; true when it made the link. */
function linkInPlace(tmp: string, path: string): boolean {
  try {
    Deno.linkSync(tmp, path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    // Some file systems refuse hard links; a checked rename is the next best thing.
    if (lstatOrNull(path) !== null) return false;
    Deno.renameSync(tmp, path);
    return true;
  }
}

function readRange(path: string, start: number, end: number): Uint8Array {
  const bytes = new Uint8Array(end - start);
  const file = Deno.openSync(path, { read: true });
  try {
    file.seekSync(start, Deno.SeekMode.Start);
    let filled = 0;
    while (filled < bytes.length) {
      const read = file.readSync(bytes.subarray(filled));
      if (read === null) {
        throw new Error(`wal ${path} ends before offset ${end}; it was truncated under the writer`);
      }
      filled += read;
    }
  } finally {
    file.close();
  }
  return bytes;
}

/** Creates the record file (and the captured input) of the line `bytes[start, end)`. */
function materializeLine(
  request: MaterializeRequest,
  bytes: Uint8Array,
  start: number,
  end: number,
  reply: MaterializeReply,
): void {
  let recordStart: number;
  let input: [number, number] | null = null;
  if (matchesAt(bytes, start, RECORD_ONLY)) {
    recordStart = start + RECORD_ONLY.length;
  } else if (matchesAt(bytes, start, WITH_INPUT)) {
    const separator = lastIndexOfBytes(bytes, RECORD_AFTER_INPUT, start, end);
    if (separator === -1) throw new Error("wal line has an input but no record");
    input = [start + WITH_INPUT.length, separator];
    recordStart = separator + RECORD_AFTER_INPUT.length;
  } else {
    throw new Error("wal line is not a record line");
  }
  const recordEnd = end - 1;
  if (bytes[recordEnd] !== CLOSE_BRACE) throw new Error("wal line does not end its object");
  const coreHash = hashAfter(bytes, CORE_HASH_KEY, recordStart, recordEnd);
  if (coreHash === null) throw new Error("wal record has no decision_core_hash");
  const { dir, day } = request;
  const content = new Uint8Array(recordEnd - recordStart + 1);
  content.set(bytes.subarray(recordStart, recordEnd));
  content[content.length - 1] = NEWLINE;
  const path = `${dir}/${edrPathOn(day, coreHash)}`;
  if (createAtomically(`${dir}/tmp`, path, content, request.checkFirst, reply)) reply.files++;
  if (input === null) return;
  const inputHash = hashAfter(bytes, INPUT_POINTER_KEY, recordStart, recordEnd);
  if (inputHash === null) throw new Error("wal line carries an input but its record points to none");
  const inputPath = `${dir}/${inputPointerOf(inputHash)}`;
  // An input may already be in place from an earlier line, so it is always checked first.
  if (createAtomically(`${dir}/tmp`, inputPath, bytes.subarray(input[0], input[1]), true, reply)) {
    reply.inputs++;
  }
}

function materialize(request: MaterializeRequest): MaterializeReply {
  const reply: MaterializeReply = {
    id: request.id,
    files: 0,
    inputs: 0,
    repaired: 0,
    newestFileMs: 0,
    errors: [],
  };
  let bytes: Uint8Array;
  try {
    bytes = readRange(walPathOn(request.dir, request.day), request.start, request.end);
  } catch (error) {
    reply.errors.push(String(error));
    return reply;
  }
  const lineAt = (start: number, end: number) => {
    try {
      materializeLine(request, bytes, start, end, reply);
    } catch (error) {
      reply.errors.push(String(error));
    }
  };
  const lines = request.lines;
  if (lines !== null) {
    for (let i = 0; i < lines.length; i += 2) lineAt(lines[i] - request.start, lines[i + 1] - request.start);
    return reply;
  }
  for (let start = 0; start < bytes.length;) {
    let end = bytes.indexOf(NEWLINE, start);
    if (end === -1) end = bytes.length;
    lineAt(start, end);
    start = end + 1;
  }
  return reply;
}

scope.onmessage = (event) => scope.postMessage(materialize(event.data));
