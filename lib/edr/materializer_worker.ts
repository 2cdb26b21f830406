/**
 * Worker that creates per-request EDR files and captured inputs with synchronous file calls. Sync calls
 * in a worker cost a fraction of async ones (no thread hand-off per call) and keep the file-system work
 * off the request thread. Each file is written to `tmp/`, hard-linked into place (never replacing an
 * existing file) and the temp name removed; no fsync, because the WAL is the durable copy.
 */

import type { MaterializeJob, MaterializeReply, MaterializeRequest } from "./materializer_protocol.ts";

const scope = globalThis as unknown as {
  onmessage: ((event: MessageEvent<MaterializeRequest>) => void) | null;
  postMessage(message: MaterializeReply): void;
};

const madeDirs = new Set<string>();
const NEWLINE = 0x0a;
let counter = 0;

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.NotFound) return false;
    throw error;
  }
}

function createAtomically(tmpDir: string, path: string, content: Uint8Array, checkFirst: boolean): boolean {
  if (checkFirst && exists(path)) return false;
  const dir = path.slice(0, path.lastIndexOf("/"));
  if (!madeDirs.has(dir)) {
    Deno.mkdirSync(dir, { recursive: true });
    madeDirs.add(dir);
  }
  const tmp = `${tmpDir}/${Deno.pid}-w${++counter}.part`;
  Deno.writeFileSync(tmp, content, { createNew: true });
  try {
    Deno.linkSync(tmp, path);
    return true;
  } catch (error) {
    if (error instanceof Deno.errors.AlreadyExists) return false;
    // Some file systems refuse hard links; a checked rename is the next best thing.
    if (exists(path)) return false;
    Deno.renameSync(tmp, path);
    return true;
  } finally {
    try {
      Deno.removeSync(tmp);
    } catch { /* renamed away or never made */ }
  }
}

/** The record's text and the newline its file ends with. */
function recordFile(bytes: Uint8Array, job: MaterializeJob): Uint8Array {
  const content = new Uint8Array(job.textEnd - job.textStart + 1);
  content.set(bytes.subarray(job.textStart, job.textEnd));
  content[content.length - 1] = NEWLINE;
  return content;
}

function run(
  tmpDir: string,
  bytes: Uint8Array,
  job: MaterializeJob,
  checkFirst: boolean,
  reply: MaterializeReply,
): void {
  try {
    if (createAtomically(tmpDir, job.path, recordFile(bytes, job), checkFirst)) reply.files++;
  } catch (error) {
    reply.errors.push({ sequence: job.sequence, inputHash: job.inputHash, reason: String(error) });
    return;
  }
  if (job.inputPath === null) return;
  try {
    const input = bytes.subarray(job.inputStart, job.inputEnd);
    if (createAtomically(tmpDir, job.inputPath, input, true)) reply.inputs++;
  } catch (error) {
    reply.errors.push({ sequence: job.sequence, inputHash: job.inputHash, reason: String(error) });
  }
}

scope.onmessage = (event) => {
  const { id, tmpDir, bytes, jobs, checkFirst } = event.data;
  const reply: MaterializeReply = { id, files: 0, inputs: 0, errors: [] };
  for (const job of jobs) run(tmpDir, bytes, job, checkFirst, reply);
  scope.postMessage(reply);
};
