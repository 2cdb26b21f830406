/** The EDR hash rules of docs/edr-format.md: decision core, record, output, and the on-disk path. */

import { canonicalJson, hashCanonical, sha256Hex } from "./canonical.ts";
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
export function computeDecisionCoreHash(draft: Pick<EdrDraft, typeof DECISION_CORE_FIELDS[number]>): string {
  const core: Record<string, unknown> = {};
  for (const field of DECISION_CORE_FIELDS) core[field] = draft[field];
  return hashCanonical(core);
}

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

/** The same path from the record's UTC day (`YYYY-MM-DD`) and its decision core hash. */
export function edrPathOn(day: string, decisionCoreHash: string): string {
  return `edr/${day.slice(0, 4)}/${day.slice(5, 7)}/${day.slice(8, 10)}/${decisionCoreHash}.json`;
}

/** A sealed record with its canonical text, as the writer needs it. */
export interface SealedRecord {
  record: EdrRecord;
  /** RFC 8785 text of the whole record (what goes to disk). */
  text: string;
}

/**
 * Adds chain fields and both hashes to a draft. Canonicalizes each top-level value once and assembles
 * the core, the hashed body and the final text from those pieces, which is byte-identical to
 * canonicalizing each object whole (RFC 8785 sorts members and nests values verbatim).
 */
export function sealDraft(draft: EdrDraft, sequence: number, prevEdrHash: string | null): SealedRecord {
  const members = new Map<string, string>();
  const put = (key: string, value: unknown) => {
    if (value === undefined) return;
    members.set(key, JSON.stringify(key) + ":" + canonicalJson(value));
  };
  for (const key of Object.keys(draft)) put(key, (draft as unknown as Record<string, unknown>)[key]);
  const coreParts: string[] = [];
  for (const field of [...DECISION_CORE_FIELDS].sort()) {
    const member = members.get(field);
    if (member !== undefined) coreParts.push(member);
  }
  const decisionCoreHash = sha256Hex("{" + coreParts.join(",") + "}");
  members.delete("edr_hash");
  members.set("sequence", '"sequence":' + canonicalJson(sequence));
  members.set("prev_edr_hash", '"prev_edr_hash":' + canonicalJson(prevEdrHash));
  members.set("decision_core_hash", '"decision_core_hash":' + canonicalJson(decisionCoreHash));
  const keys = [...members.keys()].sort();
  const bodyText = "{" + keys.map((k) => members.get(k)).join(",") + "}";
  const edrHash = sha256Hex(bodyText);
  members.set("edr_hash", '"edr_hash":' + canonicalJson(edrHash));
  keys.push("edr_hash");
  keys.sort();
  const text = "{" + keys.map((k) => members.get(k)).join(",") + "}";
  const record: EdrRecord = {
    ...draft,
    sequence,
    prev_edr_hash: prevEdrHash,
    decision_core_hash: decisionCoreHash,
    edr_hash: edrHash,
  };
  return { record, text };
}
