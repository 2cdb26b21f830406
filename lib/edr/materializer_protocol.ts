/** Messages between the EDR writer and its materializer worker. */

/**
 * Create the per-request files of the WAL lines in `[start, end)` of the day's WAL (whole lines, already
 * durable). `lines`, when given, lists `[lineStart, lineEnd)` offset pairs (without the newline) and only
 * those lines are used (recovery passes the lines it verified). `checkFirst` (recovery) skips files that
 * already exist with the right size without writing a temp file, and replaces ones of the wrong size
 * (a crash can leave a linked file whose data never reached the disk).
 */
export interface MaterializeRequest {
  id: number;
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
  /** Of `files` and `inputs`, how many replaced a damaged file instead of filling a gap. */
  repaired: number;
  /** With `checkFirst`: the latest modification time (ms since the epoch) of the files found in place, or 0. */
  newestFileMs: number;
  errors: string[];
}
