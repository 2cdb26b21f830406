/** Messages between the EDR writer and its materializer worker. */

/** One record file (and maybe its captured input) to create; texts are byte ranges of the request's `bytes`. */
export interface MaterializeJob {
  sequence: number;
  path: string;
  /** The record's canonical text is `bytes[textStart, textEnd)`; its file gets a newline after it. */
  textStart: number;
  textEnd: number;
  inputPath: string | null;
  /** The captured input's canonical text is `bytes[inputStart, inputEnd)` when `inputPath` is set. */
  inputStart: number;
  inputEnd: number;
  inputHash: string | null;
}

/**
 * A batch of jobs over one UTF-8 buffer (a WAL batch's own bytes, transferred rather than copied);
 * `checkFirst` skips files that already exist without writing a temp file (recovery).
 */
export interface MaterializeRequest {
  id: number;
  tmpDir: string;
  bytes: Uint8Array;
  jobs: MaterializeJob[];
  checkFirst: boolean;
}

/** What the worker created and what failed (reasons only, never bodies). */
export interface MaterializeReply {
  id: number;
  files: number;
  inputs: number;
  errors: Array<{ sequence: number; inputHash: string | null; reason: string }>;
}
