/** The EDR hash rules of docs/edr-format.md: decision core, record, output, and the on-disk path. */

import { canonicalJson, hashCanonical, sha256Hex, stringifiesCanonically } from "./canonical.ts";
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

type DecisionCore = Pick<EdrDraft, typeof DECISION_CORE_FIELDS[number]>;

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

/** A sealed record with its canonical text, as the writer needs it. */
export interface SealedRecord {
  record: EdrRecord;
  /** RFC 8785 text of the whole record (what goes to disk). */
  text: string;
}

/** Members of a draft; typed so that a field added to `EdrDraft` must be listed here too. */
const DRAFT_FIELDS: Record<keyof EdrDraft, true> = {
  attempts: true,
  candidates: true,
  constraints_applied: true,
  contract_hash: true,
  decision: true,
  decision_factors: true,
  decision_inputs: true,
  edr_version: true,
  effective_contract: true,
  endpoint: true,
  environment: true,
  failure: true,
  input_hash: true,
  output_hash: true,
  policy_hash: true,
  policy_version: true,
  replay: true,
  request_id: true,
  side_effects: true,
  slot: true,
  stream: true,
  timestamp: true,
  timings: true,
  usage: true,
};

function hasUnknownMembers(draft: EdrDraft): boolean {
  for (const key in draft) if (!Object.hasOwn(DRAFT_FIELDS, key)) return true;
  return false;
}

/**
 * The same two halves for a draft with members the record does not define, sorted at run time, so the
 * record keeps them and schema validation can name them.
 */
function halvesOfAnyDraft(
  draft: EdrDraft,
  chain: { sequence: number; prev_edr_hash: string | null; decision_core_hash: string },
): [Record<string, unknown>, Record<string, unknown>] {
  const members: Record<string, unknown> = { ...draft, ...chain };
  const before: Record<string, unknown> = {};
  const after: Record<string, unknown> = {};
  for (const key of Object.keys(members).sort()) {
    if (key === "edr_hash") continue;
    (key < "edr_hash" ? before : after)[key] = members[key];
  }
  return [before, after];
}

// The objects below are written out member by member in RFC 8785 order rather than sorted at run time, so
// sealing serializes each with one JSON.stringify (canonicalJson's native path) and makes no string per
// member: under load the per-member strings were most of the seal's garbage-collection cost.

/** Typed against `DECISION_CORE_FIELDS`, so the literal cannot drift from the list the format doc gives. */
function decisionCore(d: DecisionCore): DecisionCore {
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

/** The record's members that sort before `edr_hash`. */
function membersBeforeEdrHash(d: EdrDraft) {
  return {
    attempts: d.attempts,
    candidates: d.candidates,
    constraints_applied: d.constraints_applied,
    contract_hash: d.contract_hash,
    decision: d.decision,
    // Filled in once the core is hashed (see sealDraft).
    decision_core_hash: "",
    decision_factors: d.decision_factors,
    decision_inputs: d.decision_inputs,
  };
}

/** The record's members that sort after `edr_hash`. */
function membersAfterEdrHash(d: EdrDraft, sequence: number, prevEdrHash: string | null) {
  return {
    edr_version: d.edr_version,
    effective_contract: d.effective_contract,
    endpoint: d.endpoint,
    environment: d.environment,
    failure: d.failure,
    input_hash: d.input_hash,
    output_hash: d.output_hash,
    policy_hash: d.policy_hash,
    policy_version: d.policy_version,
    prev_edr_hash: prevEdrHash,
    replay: d.replay,
    request_id: d.request_id,
    sequence,
    side_effects: d.side_effects,
    slot: d.slot,
    stream: d.stream,
    timestamp: d.timestamp,
    timings: d.timings,
    usage: d.usage,
  };
}

/**
 * Adds chain fields and both hashes to a draft. The record is serialized once, as its members before and
 * after `edr_hash`: the hashed body joins the two halves and the final text puts `edr_hash` between them,
 * which is byte-identical to canonicalizing each whole object (RFC 8785 sorts members and nests values
 * verbatim).
 */
export function sealDraft(draft: EdrDraft, sequence: number, prevEdrHash: string | null): SealedRecord {
  const chain = { sequence, prev_edr_hash: prevEdrHash, decision_core_hash: "" };
  const [before, after] = hasUnknownMembers(draft)
    ? halvesOfAnyDraft(draft, chain)
    : [membersBeforeEdrHash(draft), membersAfterEdrHash(draft, sequence, prevEdrHash)];
  // The decision core's values are all in the two halves, so one check of the halves covers all three.
  const serialize = stringifiesCanonically(before) && stringifiesCanonically(after)
    ? JSON.stringify
    : canonicalJson;
  const decisionCoreHash = sha256Hex(serialize(decisionCore(draft)));
  before.decision_core_hash = decisionCoreHash;
  const head = serialize(before).slice(0, -1);
  const tail = serialize(after).slice(1);
  const edrHash = sha256Hex(`${head},${tail}`);
  const text = `${head},"edr_hash":"${edrHash}",${tail}`;
  const record: EdrRecord = {
    ...draft,
    sequence,
    prev_edr_hash: prevEdrHash,
    decision_core_hash: decisionCoreHash,
    edr_hash: edrHash,
  };
  return { record, text };
}
