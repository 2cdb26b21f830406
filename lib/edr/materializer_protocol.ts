/** Messages between the EDR writer and its materializer worker. */

/**
 * Create the per-request files of the WAL lines in `[start, end)` of `walPath` (whole lines, already
 * durable). `lines`, when given, lists `[lineStart, lineEnd)` offset pairs (without the newline) and only
 * those lines are used (recovery passes the lines it verified). `checkFirst` skips record files that
 * already exist without writing a temp file (recovery).
 */
export interface MaterializeRequest {
  id: number;
  walPath: string;
  /** The UTC day the WAL belongs to (`YYYY-MM-DD`), which is the day of every record in it. */
  day: string;
  start: number;
  end: number;
  lines: number[] | null;
  /** The artifacts directory (holding `edr/`, `inputs/` and `tmp/`). */
  dir: string;
  checkFirst: boolean;
}

/** What the worker created and what failed (reasons only, never bodies). */
export interface MaterializeReply {
  id: number;
  files: number;
  inputs: number;
  errors: string[];
}
