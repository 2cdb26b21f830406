/**
 * The replay report: its shape (published as schemas/replay/REPLAY_REPORT_v1.0.0.json), its hash, its
 * validation and its durable, atomic write.
 */
import { Ajv2020 } from "ajv/dist/2020";
import { dirname } from "node:path";
import { hashCanonical } from "../edr/mod.ts";
import reportSchema from "../../schemas/replay/REPLAY_REPORT_v1.0.0.json" with { type: "json" };
import type { ReasonCode, ReplayStatus } from "./reason_codes.ts";

/** The name of one replay check, in the documented order. */
export type CheckName =
  | "parse"
  | "side_effects"
  | "replayable"
  | "input_pointer"
  | "network"
  | "provider"
  | "edr_hash"
  | "input_hash"
  | "policy_hash"
  | "decision"
  | "decision_core_hash"
  | "router_version"
  | "ollama_version"
  | "model_digest"
  | "output_hash";

/** The documented check order; a report lists its checks in this order. */
export const CHECK_ORDER: readonly CheckName[] = Object.freeze(
  [
    "parse",
    "side_effects",
    "replayable",
    "input_pointer",
    "network",
    "provider",
    "edr_hash",
    "input_hash",
    "policy_hash",
    "decision",
    "decision_core_hash",
    "router_version",
    "ollama_version",
    "model_digest",
    "output_hash",
  ] as const,
);

/** The reason code a failing check stands for. */
export const CHECK_REASON: Readonly<Record<CheckName, ReasonCode>> = Object.freeze({
  parse: "EXECUTION_ERROR",
  side_effects: "SIDE_EFFECTS_NOT_ALLOWED",
  replayable: "REPLAY_NOT_REPLAYABLE",
  input_pointer: "INPUT_POINTER_MISSING",
  network: "NETWORK_NOT_ALLOWED",
  provider: "PROVIDER_NOT_SUPPORTED",
  edr_hash: "EDR_HASH_MISMATCH",
  input_hash: "INPUT_HASH_MISMATCH",
  policy_hash: "DECISION_CORE_MISMATCH",
  decision: "DECISION_CORE_MISMATCH",
  decision_core_hash: "DECISION_CORE_MISMATCH",
  router_version: "ENVIRONMENT_MISMATCH",
  ollama_version: "ENVIRONMENT_MISMATCH",
  model_digest: "ENVIRONMENT_MISMATCH",
  output_hash: "OUTPUT_HASH_MISMATCH",
});

/** One check's verdict; `expected` is what the record says, `observed` what replay found. */
export interface ReplayCheck {
  name: CheckName;
  status: "pass" | "fail" | "skipped";
  expected: string | null;
  observed: string | null;
}

/** The replay report (REPLAY_REPORT_v1.0.0). */
export interface ReplayReport {
  report_version: "1.0.0";
  status: ReplayStatus;
  reason_codes: ReasonCode[];
  /** One sentence for REFUSED/ERROR (what to do), null otherwise. */
  message: string | null;
  /** The record's path relative to the artifacts folder when inside it, else as given. */
  edr_path: string;
  request_id: string | null;
  decision_core_hash: string | null;
  flags: { allow_side_effects: boolean; allow_network: boolean };
  checks: ReplayCheck[];
  /** Today's router version, the build that replayed. */
  router_version: string;
  replayed_at: string;
  /** SHA-256 of the canonical report without this field. */
  report_hash: string;
}

/** The REPLAY_REPORT_v1.0.0 JSON Schema document, as published in `schemas/replay/`. */
export const REPLAY_REPORT_SCHEMA: Readonly<Record<string, unknown>> = reportSchema;

// Strict mode stays on so a schema typo fails at load; union types are deliberate (`["string","null"]`).
const ajv = new Ajv2020({ allErrors: true, strict: true, allowUnionTypes: true, validateFormats: false });
const validate = ajv.compile(reportSchema);

/** Validates a report against REPLAY_REPORT_v1.0.0. */
export function validateReport(report: unknown): { valid: true } | { valid: false; errors: string[] } {
  if (validate(report)) return { valid: true };
  const errors = (validate.errors ?? []).map((e) => `${e.instancePath || "/"} ${e.message ?? "is invalid"}`);
  return { valid: false, errors };
}

/** Seals a report: adds `report_hash` over the canonical report without it. */
export function sealReport(report: Omit<ReplayReport, "report_hash">): ReplayReport {
  const { report_hash: _drop, ...rest } = report as ReplayReport;
  return { ...rest, report_hash: hashCanonical(rest) };
}

/** True when a report's `report_hash` matches its content. */
export function reportHashHolds(report: ReplayReport): boolean {
  const { report_hash, ...rest } = report;
  return hashCanonical(rest) === report_hash;
}

/**
 * Writes a report durably and atomically: a temp file in the same folder, fsync, rename over the
 * target, fsync the folder, so a reader never sees half a report.
 */
export async function writeReportAtomic(path: string, report: ReplayReport): Promise<void> {
  const dir = dirname(path);
  await Deno.mkdir(dir, { recursive: true });
  const tmp = `${path}.${crypto.randomUUID()}.tmp`;
  const bytes = new TextEncoder().encode(JSON.stringify(report, null, 2) + "\n");
  const file = await Deno.open(tmp, { write: true, createNew: true, mode: 0o644 });
  try {
    let written = 0;
    while (written < bytes.length) written += await file.write(bytes.subarray(written));
    await file.sync();
  } finally {
    file.close();
  }
  try {
    await Deno.rename(tmp, path);
  } catch (error) {
    await Deno.remove(tmp).catch(() => {});
    throw error;
  }
  await syncDir(dir);
}

async function syncDir(dir: string): Promise<void> {
  let handle: Deno.FsFile | undefined;
  try {
    handle = await Deno.open(dir, { read: true });
    await handle.sync();
  } catch {
    // Some filesystems refuse fsync on a directory; the rename itself is still atomic.
  } finally {
    handle?.close();
  }
}
