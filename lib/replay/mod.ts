/**
 * Replay and verification of Execution Decision Records: the replay engine and its report, the
 * reason-code contract, the tree verifier, and the launcher helpers `cli/replay.ts` uses. This file is
 * the module's only public door.
 */

export {
  ALL_REASON_CODES,
  type DivergedCode,
  type ErrorCode,
  EXIT_CODES,
  REASON_CODES,
  type ReasonCode,
  type RefusedCode,
  REPLAY_STATUSES,
  type ReplayStatus,
  worstStatus,
} from "./reason_codes.ts";
export {
  CHECK_ORDER,
  CHECK_REASON,
  type CheckName,
  REPLAY_REPORT_SCHEMA,
  type ReplayCheck,
  type ReplayReport,
  reportHashHolds,
  sealReport,
  validateReport,
  writeReportAtomic,
} from "./report.ts";
export { DEFAULT_OLLAMA_URL } from "../config/mod.ts";
export { listEdrFiles, ollamaBaseUrl, replayEdr, type ReplayOptions, type ReplayResult } from "./replay.ts";
export {
  checkCheckpointLines,
  checkRecord,
  type FindingKind,
  type RecordPlace,
  type VerifyFinding,
  type VerifyOptions,
  type VerifyResult,
  verifyTree,
} from "./verify.ts";
export { type ChainEntry, DayChain } from "./verify_day.ts";
export { artifactsDirOfEdr, dayPathOf, isInside, reportPathOf, resolvePointer } from "./paths.ts";
export {
  type ArtifactsDirSources,
  replayPermissionArgs,
  type ReplayPermissionInputs,
  resolveArtifactsDir,
} from "./launch.ts";
export { REPLAY_FLAGS, REPLAY_USAGE, runReplayCli, type RunReplayCliOptions } from "./run_cli.ts";
