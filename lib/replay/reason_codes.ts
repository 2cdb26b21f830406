/**
 * The replay reason-code contract (seed README, locked by tests/replay/reason_codes_test.ts). Changing
 * this list is a breaking change for every operator script that reads replay reports.
 */

/** Outcome of one replay. */
export type ReplayStatus = "MATCH" | "DIVERGED" | "REFUSED" | "ERROR";

/** Every replay status, in order of severity (the worst wins in `--all`). */
export const REPLAY_STATUSES: readonly ReplayStatus[] = Object.freeze(
  ["MATCH", "DIVERGED", "REFUSED", "ERROR"] as const,
);

/** The reason codes each non-MATCH status may carry: the seed's list, exactly. */
export const REASON_CODES = Object.freeze({
  REFUSED: Object.freeze(["SIDE_EFFECTS_NOT_ALLOWED", "NETWORK_NOT_ALLOWED"] as const),
  ERROR: Object.freeze(
    ["REPLAY_NOT_REPLAYABLE", "INPUT_POINTER_MISSING", "PROVIDER_NOT_SUPPORTED", "EXECUTION_ERROR"] as const,
  ),
  DIVERGED: Object.freeze(
    [
      "INPUT_HASH_MISMATCH",
      "OUTPUT_HASH_MISMATCH",
      "DECISION_CORE_MISMATCH",
      "EDR_HASH_MISMATCH",
      "ENVIRONMENT_MISMATCH",
    ] as const,
  ),
});

/** A reason code a REFUSED report carries. */
export type RefusedCode = (typeof REASON_CODES.REFUSED)[number];
/** A reason code an ERROR report carries. */
export type ErrorCode = (typeof REASON_CODES.ERROR)[number];
/** A reason code a DIVERGED report carries. */
export type DivergedCode = (typeof REASON_CODES.DIVERGED)[number];
/** Any replay reason code. */
export type ReasonCode = RefusedCode | ErrorCode | DivergedCode;

/** Every reason code, flat. */
export const ALL_REASON_CODES: readonly ReasonCode[] = Object.freeze([
  ...REASON_CODES.REFUSED,
  ...REASON_CODES.ERROR,
  ...REASON_CODES.DIVERGED,
]);

/** Process exit code for each status (design.md §3; 64 is a usage error). */
export const EXIT_CODES = Object.freeze({ MATCH: 0, DIVERGED: 1, REFUSED: 2, ERROR: 3, USAGE: 64 } as const);

/** The worse of two statuses (MATCH < DIVERGED < REFUSED < ERROR), for summarising many replays. */
export function worstStatus(a: ReplayStatus, b: ReplayStatus): ReplayStatus {
  return REPLAY_STATUSES.indexOf(a) >= REPLAY_STATUSES.indexOf(b) ? a : b;
}
