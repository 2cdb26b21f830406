/** Messages between the EDR writer and its materializer worker. */

/** One record file (and maybe its captured input) to create. */
export interface MaterializeJob {
  sequence: number;
  path: string;
  text: string;
  inputPath: string | null;
  inputText: string | null;
  inputHash: string | null;
}

/** A batch of jobs; `checkFirst` skips files that already exist without writing a temp file (recovery). */
export interface MaterializeRequest {
  id: number;
  tmpDir: string;
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
