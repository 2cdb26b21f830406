import assert from "node:assert/strict";
import {
  computeDecisionCoreHash,
  computeEdrHash,
  DECISION_CORE_FIELDS,
  edrPath,
  hashCanonical,
  outputHashOf,
  sealDraft,
} from "../../lib/edr/mod.ts";
import canonicalize from "canonicalize";
import { sampleDraft } from "./sample_draft.ts";

Deno.test("EDR hash rules", async (t) => {
  await t.step("decision_core_hash is H(the eleven core fields) and nothing else", () => {
    const draft = sampleDraft();
    const core = Object.fromEntries(DECISION_CORE_FIELDS.map((f) => [f, draft[f]]));
    assert.equal(computeDecisionCoreHash(draft), hashCanonical(core));
    const later = {
      ...draft,
      attempts: [],
      usage: null,
      timings: { decide_ms: 9, first_byte_ms: null, total_ms: 99 },
    };
    assert.equal(computeDecisionCoreHash(later), computeDecisionCoreHash(draft));
    const other = { ...draft, decision: { ...draft.decision, path: "fallback" as const } };
    assert.notEqual(computeDecisionCoreHash(other), computeDecisionCoreHash(draft));
  });

  await t.step("edr_hash covers sequence and prev_edr_hash and ignores edr_hash itself", () => {
    const draft = sampleDraft();
    const base = {
      ...draft,
      sequence: 1,
      prev_edr_hash: null,
      decision_core_hash: computeDecisionCoreHash(draft),
    };
    const hash = computeEdrHash(base);
    const { edr_hash: _omit, ...same } = { ...base, edr_hash: "0".repeat(64) };
    assert.equal(computeEdrHash({ ...base, edr_hash: "0".repeat(64) }), hash);
    assert.equal(computeEdrHash(same), hash);
    assert.notEqual(computeEdrHash({ ...base, sequence: 2 }), hash);
    assert.notEqual(computeEdrHash({ ...base, prev_edr_hash: "1".repeat(64) }), hash);
  });

  await t.step("output hash ignores tool-call ids and argument whitespace", () => {
    const a = outputHashOf({
      content: null,
      tool_calls: [{
        id: "call_1",
        type: "function",
        function: { name: "get", arguments: '{"city": "Oslo", "n":1}' },
      }],
      finish_reason: "tool_calls",
    });
    const b = outputHashOf({
      content: "",
      tool_calls: [{ function: { name: "get", arguments: '{\n  "n": 1,\n  "city": "Oslo"\n}' } }],
      finish_reason: "tool_calls",
    });
    const flat = outputHashOf({
      content: null,
      tool_calls: [{ name: "get", arguments: { city: "Oslo", n: 1 } }],
      finish_reason: "tool_calls",
    });
    assert.equal(a, b);
    assert.equal(a, flat);
    assert.equal(
      a,
      hashCanonical({
        content: null,
        tool_calls: [{ name: "get", arguments: '{"city":"Oslo","n":1}' }],
        finish_reason: "tool_calls",
      }),
    );
  });

  await t.step("output hash keeps unparseable arguments verbatim and treats empty arguments as {}", () => {
    const raw = outputHashOf({
      content: null,
      tool_calls: [{ name: "f", arguments: "{oops" }],
      finish_reason: "tool_calls",
    });
    assert.equal(
      raw,
      hashCanonical({
        content: null,
        tool_calls: [{ name: "f", arguments: "{oops" }],
        finish_reason: "tool_calls",
      }),
    );
    const empty = outputHashOf({
      content: null,
      tool_calls: [{ name: "f", arguments: "" }],
      finish_reason: "tool_calls",
    });
    const braces = outputHashOf({
      content: null,
      tool_calls: [{ name: "f", arguments: "{ }" }],
      finish_reason: "tool_calls",
    });
    assert.equal(empty, braces);
  });

  await t.step("output hash changes when the text or finish reason changes", () => {
    const base = outputHashOf({ content: "hi", tool_calls: [], finish_reason: "stop" });
    assert.equal(base, outputHashOf({ content: "hi", finish_reason: "stop" }));
    assert.notEqual(base, outputHashOf({ content: "hi!", tool_calls: [], finish_reason: "stop" }));
    assert.notEqual(base, outputHashOf({ content: "hi", tool_calls: [], finish_reason: "length" }));
  });

  await t.step("edrPath uses the UTC date of the timestamp", () => {
    const hash = "a".repeat(64);
    assert.equal(
      edrPath({ timestamp: "2026-11-27T23:59:59.123Z", decision_core_hash: hash }),
      `edr/2026/11/27/${hash}.json`,
    );
    assert.equal(
      edrPath({ timestamp: "2026-11-28T00:30:00.000+01:00", decision_core_hash: hash }),
      `edr/2026/11/27/${hash}.json`,
    );
    assert.throws(() => edrPath({ timestamp: "yesterday", decision_core_hash: hash }), /not a date/);
  });

  await t.step("a sealed record's text is the RFC 8785 text of the whole record", () => {
    // sealDraft serializes the record in two halves around edr_hash; a library must agree byte for byte.
    const drafts = [
      sampleDraft(),
      sampleDraft({ usage: null, failure: { type: "provider_error", stage: "execute", message: "x" } }),
      { ...sampleDraft(), unexpected: { b: 1, a: [2, { d: 3, c: 4 }] } } as never,
    ];
    for (const [i, draft] of drafts.entries()) {
      const { record, text } = sealDraft(draft, i + 1, i === 0 ? null : "a".repeat(64));
      assert.equal(text, canonicalize(record));
      assert.equal(record.decision_core_hash, computeDecisionCoreHash(draft));
      assert.equal(record.edr_hash, computeEdrHash(record));
    }
  });
});
