import assert from "node:assert/strict";
import canonicalize from "canonicalize";
import fc from "fast-check";
import { type EdrDraft, sealDraft, sealDraftPlain } from "../../lib/edr/mod.ts";
import { sampleDraft } from "./sample_draft.ts";

/** Draft members whose values the property replaces with arbitrary JSON (order and types both vary). */
const VARIED = [
  "decision_inputs",
  "candidates",
  "attempts",
  "usage",
  "timings",
  "environment",
  "failure",
  "slot",
  "replay",
  "effective_contract",
] as const;

const draftArbitrary = fc.record({
  replaced: fc.dictionary(fc.constantFrom(...VARIED), fc.jsonValue(), { maxKeys: 4 }),
  unknown: fc.option(fc.dictionary(fc.string({ maxLength: 6 }), fc.jsonValue(), { maxKeys: 3 }), {
    nil: null,
  }),
  dropped: fc.option(fc.constantFrom(...VARIED), { nil: null }),
  sequence: fc.integer({ min: 1, max: 2 ** 40 }),
  prev: fc.option(fc.stringMatching(/^[0-9a-f]{64}$/), { nil: null }),
  presort: fc.boolean(),
});

Deno.test("sealDraft (two halves on the native path) equals sealing the whole record with the library", async (t) => {
  await t.step("random drafts: replaced, missing and unknown members, canonical order or not", () => {
    fc.assert(
      fc.property(draftArbitrary, ({ replaced, unknown, dropped, sequence, prev, presort }) => {
        let draft: Record<string, unknown> = { ...sampleDraft(), ...replaced, ...unknown };
        if (dropped !== null) delete draft[dropped];
        // The router builds its drafts in canonical member order, which is what the native path is for.
        if (presort) draft = JSON.parse(canonicalize(draft)!);
        const fast = sealDraft(draft as unknown as EdrDraft, sequence, prev);
        const plain = sealDraftPlain(draft as unknown as EdrDraft, sequence, prev);
        assert.equal(fast.text, plain.text);
        assert.deepEqual(fast.record, plain.record);
        assert.equal(fast.text, canonicalize(fast.record));
      }),
      { numRuns: 300 },
    );
  });

  await t.step("a draft that carries an edr_hash of its own gets the computed one", () => {
    const draft = { ...sampleDraft(), edr_hash: "0".repeat(64) } as unknown as EdrDraft;
    const fast = sealDraft(draft, 3, "a".repeat(64));
    assert.equal(fast.text, sealDraftPlain(draft, 3, "a".repeat(64)).text);
    assert.notEqual(fast.record.edr_hash, "0".repeat(64));
  });
});
