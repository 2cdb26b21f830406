/**
 * Worker that creates the per-request EDR files and captured inputs from durable WAL lines. It reads the
 * lines back from the WAL (page cache) instead of being handed them, so the request thread keeps nothing
 * per record while files wait for a quiet moment. Sync file calls in a worker cost a fraction of async
 * ones (no thread hand-off per call). Each file is created atomically (`atomic_file.ts`) without fsync,
 * because the WAL is the durable copy. It loads only lib/edr modules without dependencies
 * (cli/serve.ts grants read on that folder; tests/http/permissions_test.ts checks the graph).
 */

import { AtomicFiles, lstatOrNull } from "./atomic_file.ts";
import type { MaterializeReply, MaterializeRequest } from "./materializer_protocol.ts";
import { edrPathOn, inputPointerOf, walPathOn } from "./paths.ts";
import { parseWalLine } from "./wal_line.ts";

const NEWLINE = 0x0a;

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

/** Creates the files of WAL lines; one per worker. */
class LineMaterializer {
  readonly #files = new AtomicFiles("w");
  /** Record folders already made, so a day's files cost no mkdir each. */
  readonly #madeDirs = new Set<string>();

  /** Creates the files of the lines a request names; one error per line that failed. */
  materialize(request: MaterializeRequest): MaterializeReply {
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
        this.#materializeLine(request, bytes, start, end, reply);
      } catch (error) {
        reply.errors.push(String(error));
      }
    };
    const lines = request.lines;
    if (lines !== null) {
      for (let i = 0; i < lines.length; i += 2) {
        lineAt(lines[i] - request.start, lines[i + 1] - request.start);
      }
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

  /** Creates the record file (and the captured input) of the line `bytes[start, end)`. */
  #materializeLine(
    request: MaterializeRequest,
    bytes: Uint8Array,
    start: number,
    end: number,
    reply: MaterializeReply,
  ): void {
    const line = parseWalLine(bytes, start, end);
    const [recordStart, recordEnd] = line.record;
    const content = new Uint8Array(recordEnd - recordStart + 1);
    content.set(bytes.subarray(recordStart, recordEnd));
    content[content.length - 1] = NEWLINE;
    const { dir, day } = request;
    const path = `${dir}/${edrPathOn(day, line.decisionCoreHash)}`;
    if (this.#create(dir, path, content, request.checkFirst, reply)) reply.files++;
    if (line.input === null) return;
    if (line.inputHash === null) throw new Error("wal line carries an input but its record points to none");
    const inputPath = `${dir}/${inputPointerOf(line.inputHash)}`;
    // An input may already be in place from an earlier line, so it is always checked first.
    if (this.#create(dir, inputPath, bytes.subarray(line.input[0], line.input[1]), true, reply)) {
      reply.inputs++;
    }
  }

  /**
   * Creates `path` with `content` unless it exists; true when it wrote. With `checkFirst` (recovery, and
   * always for inputs), a file in place is kept only if its size is right: a crash can leave a linked file
   * whose data never reached the disk, and the WAL line is the durable copy of what it must hold.
   */
  #create(
    dir: string,
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
    const folder = path.slice(0, path.lastIndexOf("/"));
    if (!this.#madeDirs.has(folder)) {
      Deno.mkdirSync(folder, { recursive: true });
      this.#madeDirs.add(folder);
    }
    // Damaged: replaced from the WAL line. A failure here is an error to report, not a file to keep.
    const replace = existing !== null;
    const wrote = this.#files.create(`${dir}/tmp`, path, content, { replace });
    if (replace) reply.repaired++;
    return wrote;
  }
}

function serve(scope: {
  onmessage: ((event: MessageEvent<MaterializeRequest>) => void) | null;
  postMessage(message: MaterializeReply): void;
}): void {
  const materializer = new LineMaterializer();
  scope.onmessage = (event) => scope.postMessage(materializer.materialize(event.data));
}

serve(globalThis as unknown as Parameters<typeof serve>[0]);
