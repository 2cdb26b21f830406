/**
 * Where things live under the artifacts dir. No dependencies, so the materializer worker loads nothing
 * else to find its files.
 */

/** A record file's path from the record's UTC day (`YYYY-MM-DD`) and its decision core hash. */
export function edrPathOn(day: string, decisionCoreHash: string): string {
  return `edr/${day.slice(0, 4)}/${day.slice(5, 7)}/${day.slice(8, 10)}/${decisionCoreHash}.json`;
}

/** A day's write-ahead log under the artifacts dir `dir`. */
export function walPathOn(dir: string, day: string): string {
  return `${dir}/wal/${day}.log`;
}

/** `replay.required_inputs_pointer` for a captured input's SHA-256. */
export function inputPointerOf(inputHash: string): string {
  return `inputs/${inputHash}.json`;
}

/** The SHA-256 an `inputs/<sha256>.json` pointer names. */
export function inputHashOfPointer(pointer: string): string {
  return pointer.slice("inputs/".length, -".json".length);
}
