/**
 * Sealing: a draft plus its chain fields becomes a record with both hashes and its canonical text. Pure;
 * `sealDraft` is the fast path the writer uses and `sealDraftPlain` its plain twin (canonicalize the whole
 * record with the library), held byte-equal by tests/edr/seal_test.ts and compared in
 * bench/edr_writer_bench.ts.
 */

import canonicalize from "canonicalize";
import { canonicalJson, sha256Hex, stringifiesCanonically } from "./canonical.ts";
import { DECISION_CORE_FIELDS, decisionCore } from "./hashes.ts";
import type { EdrDraft, EdrRecord } from "./types.ts";

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

const DRAFT_FIELD_COUNT = Object.keys(DRAFT_FIELDS).length;

/** Whether a draft has members the record does not define, or lacks some it does (only in tests). */
function draftShape(draft: EdrDraft): "complete" | "partial" | "unknown" {
  let count = 0;
  for (const key in draft) {
    if (!Object.hasOwn(DRAFT_FIELDS, key)) return "unknown";
    count++;
  }
  return count === DRAFT_FIELD_COUNT ? "complete" : "partial";
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
  const shape = draftShape(draft);
  const [before, after] = shape === "unknown"
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
  // Spreading the two small halves costs a tenth of spreading the draft, which has every member at once.
  const record: EdrRecord = shape === "complete"
    ? { ...before, edr_hash: edrHash, ...after } as unknown as EdrRecord
    : {
      ...draft,
      sequence,
      prev_edr_hash: prevEdrHash,
      decision_core_hash: decisionCoreHash,
      edr_hash: edrHash,
    };
  return { record, text };
}

function canonicalText(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) throw new TypeError("value has no JSON representation");
  return text;
}

/**
 * The plain twin of `sealDraft`: builds the decision core and the whole record as objects and hands each
 * to the `canonicalize` library. Same record, same text, byte for byte.
 */
export function sealDraftPlain(draft: EdrDraft, sequence: number, prevEdrHash: string | null): SealedRecord {
  const core: Record<string, unknown> = {};
  for (const field of DECISION_CORE_FIELDS) core[field] = draft[field];
  const decisionCoreHash = sha256Hex(canonicalText(core));
  const body: Record<string, unknown> = {
    ...draft,
    sequence,
    prev_edr_hash: prevEdrHash,
    decision_core_hash: decisionCoreHash,
  };
  delete body.edr_hash;
  const edrHash = sha256Hex(canonicalText(body));
  const record = { ...body, edr_hash: edrHash } as unknown as EdrRecord;
  return { record, text: canonicalText(record) };
}
