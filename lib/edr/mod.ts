/**
 * Execution Decision Records: RFC 8785 canonical JSON, the hash rules, the EDR_v1.0.0 schema, and the
 * durable group-commit writer. This file is the module's only public door.
 */

export { canonicalJson, hashCanonical, sha256Hex } from "./canonical.ts";
export {
  computeDecisionCoreHash,
  computeEdrHash,
  DECISION_CORE_FIELDS,
  edrDay,
  edrPath,
  type OutputForHash,
  outputHashOf,
  type OutputToolCall,
} from "./hashes.ts";
export { sealDraft, sealDraftPlain, type SealedRecord } from "./seal.ts";
export { EDR_SCHEMA, type EdrValidationResult, validateEdr } from "./schema.ts";
export * from "./types.ts";
export { inputPointerOf } from "./paths.ts";
export {
  type Checkpoint,
  type CheckpointKey,
  checkpointPathOn,
  checkpointSignatureHolds,
  CheckpointWriter,
  type CheckpointWriterOptions,
  type HeadSource,
  parseCheckpoint,
  signCheckpoint,
  UNSIGNED,
} from "./checkpoint.ts";
export { scanWalLines } from "./wal_scan.ts";
export { appendWalLine, parseWalLine, type WalLineParts } from "./wal_line.ts";
export {
  type EdrCommitOptions,
  type EdrLogEvent,
  type EdrRecoveryStats,
  EdrUnavailableError,
  EdrValidationError,
  EdrWriteError,
  EdrWriter,
  type EdrWriterOptions,
  type EdrWriterStats,
  writePolicySnapshot,
} from "./writer.ts";
export type { EdrWriterHealth } from "./writer_health.ts";
