/** The EDR hash rules of docs/edr-format.md: decision core, record, output, and the on-disk path. */

import { canonicalJson, hashCanonical } from "./canonical.ts";
import { edrPathOn } from "./paths.ts";
import type { EdrDraft, EdrRecord } from "./types.ts";

/** Fields covered by `decision_core_hash`, in the order the format doc lists them. */
export const DECISION_CORE_FIELDS = [
  "request_id",
  "timestamp",
  "endpoint",
  "contract_hash",
  "policy_hash",
  "input_hash",
  "decision_inputs",
  "candidates",
  "decision",
  "decision_factors",
  "constraints_applied",
] as const;

/** SHA-256 of the canonical decision core: what `decide()` saw and what it chose. */
export function computeDecisionCoreHash(draft: DecisionCore): string {
  return hashCanonical(decisionCore(draft));
}

export type DecisionCore = Pick<EdrDraft, typeof DECISION_CORE_FIELDS[number]>;

/** SHA-256 of the canonical record without `edr_hash` (an `edr_hash` field present is ignored). */
export function computeEdrHash(record: Omit<EdrRecord, "edr_hash"> | EdrRecord): string {
  const { edr_hash: _ignored, ...rest } = record as EdrRecord;
  return hashCanonical(rest);
}

/** A tool call as any adapter reports it: OpenAI's nested shape or a flat `{name, arguments}`. */
export type OutputToolCall =
  | { id?: string; type?: string; function: { name: string; arguments: string | unknown } }
  | { name: string; arguments: string | unknown };

/** The parts of an answer that `output_hash` covers. */
export interface OutputForHash {
  content: string | null;
  tool_calls?: OutputToolCall[] | null;
  finish_reason: string | null;
}

function normalizeArguments(args: unknown): string {
  if (typeof args !== "string") return canonicalJson(args ?? {});
  // Providers spell "no arguments" as "" or "{}"; both mean an empty object.
  if (args.trim() === "") return "{}";
  try {
    return canonicalJson(JSON.parse(args));
  } catch {
    return args;
  }
}

/**
 * SHA-256 of `{content, tool_calls: [{name, arguments}], finish_reason}`. Tool-call ids are dropped and
 * arguments that parse as JSON are compared in canonical form, so providers' whitespace does not matter;
 * empty text content counts as null because providers differ in how they say "no text".
 */
export function outputHashOf(output: OutputForHash): string {
  // Members in RFC 8785 order, so canonicalJson takes its native path.
  const toolCalls = (output.tool_calls ?? []).map((call) => {
    const fn = "function" in call ? call.function : call;
    return { arguments: normalizeArguments(fn.arguments), name: fn.name };
  });
  return hashCanonical({
    content: output.content === "" ? null : output.content,
    finish_reason: output.finish_reason,
    tool_calls: toolCalls,
  });
}

/** The UTC day (`YYYY-MM-DD`) of an EDR timestamp; throws when the timestamp is not a valid date. */
export function edrDay(timestamp: string): string {
  const ms = Date.parse(timestamp);
  if (Number.isNaN(ms)) {
    throw new RangeError(
      `edr timestamp "${timestamp}" is not a date; use ISO 8601 UTC like 2026-11-27T23:59:59.123Z`,
    );
  }
  return new Date(ms).toISOString().slice(0, 10);
}

/** Path of a record's file relative to the artifacts dir: `edr/YYYY/MM/DD/<decision_core_hash>.json`. */
export function edrPath(record: Pick<EdrRecord, "timestamp" | "decision_core_hash">): string {
  return edrPathOn(edrDay(record.timestamp), record.decision_core_hash);
}

/** Typed against `DECISION_CORE_FIELDS`, so the literal cannot drift from the list the format doc gives. */
export function decisionCore(d: DecisionCore): DecisionCore {
  return {
    candidates: d.candidates,
    constraints_applied: d.constraints_applied,
    contract_hash: d.contract_hash,
    decision: d.decision,
    decision_factors: d.decision_factors,
    decision_inputs: d.decision_inputs,
    endpoint: d.endpoint,
    input_hash: d.input_hash,
    policy_hash: d.policy_hash,
    request_id: d.request_id,
    timestamp: d.timestamp,
  };
}
