import assert from "node:assert/strict";
import fc from "fast-check";
import {
  appendWalLine,
  canonicalJson,
  type EdrDraft,
  inputPointerOf,
  parseWalLine,
  sealDraft,
  sha256Hex,
} from "../../lib/edr/mod.ts";
import { Utf8Builder } from "../../lib/edr/utf8_builder.ts";
import { sampleDraft } from "./sample_draft.ts";

const encoder = new TextEncoder();
const decoder = new TextDecoder();

/** Text that looks like the line's own framing, to try to mislead a parser that searches for it. */
const framingLike = fc.constantFrom(
  ',"record":',
  '{"record":',
  '"decision_core_hash":"' + "a".repeat(64) + '"',
  '"required_inputs_pointer":"inputs/' + "b".repeat(64) + '.json"',
  '\\"}',
  "\\",
  '"',
  "}\n",
);
const trickyJson = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: "small" },
    fc.jsonValue({ maxDepth: 2 }),
    framingLike,
    fc.array(tie("value"), { maxLength: 3 }),
    fc.dictionary(fc.oneof(fc.string({ maxLength: 4 }), framingLike), tie("value"), { maxKeys: 3 }),
  ),
})).value;

function lineOf(draft: EdrDraft, input: unknown | undefined) {
  let inputText: string | null = null;
  if (input !== undefined) {
    inputText = canonicalJson(input);
    const pointer = inputPointerOf(sha256Hex(inputText));
    draft = { ...draft, replay: { ...draft.replay, required_inputs_pointer: pointer } };
  }
  const sealed = sealDraft(draft, 1, null);
  const builder = new Utf8Builder();
  appendWalLine(builder, sealed.text, inputText);
  return { bytes: builder.view().slice(), sealed, inputText };
}

Deno.test("a WAL line parses back into the input and record it was built from", async (t) => {
  await t.step("random records and inputs, including text that mimics the framing", () => {
    fc.assert(
      fc.property(
        trickyJson,
        fc.option(trickyJson, { nil: undefined }),
        fc.integer({ min: 0, max: 20 }),
        (member, input, pad) => {
          const draft = sampleDraft({ decision_inputs: { tricky: member, pad: "x".repeat(pad) } as never });
          const { bytes, sealed, inputText } = lineOf(draft, input);
          // The line is parsed where it sits among other bytes, without its newline.
          const framed = new Uint8Array([...encoder.encode("junk\n"), ...bytes]);
          const parts = parseWalLine(framed, 5, framed.length - 1);
          assert.equal(decoder.decode(framed.subarray(...parts.record)), sealed.text);
          assert.equal(parts.decisionCoreHash, sealed.record.decision_core_hash);
          if (inputText === null) {
            assert.equal(parts.input, null);
            assert.equal(parts.inputHash, null);
          } else {
            assert.equal(decoder.decode(framed.subarray(...parts.input!)), inputText);
            assert.equal(parts.inputHash, sha256Hex(inputText));
          }
        },
      ),
      { numRuns: 300 },
    );
  });

  await t.step("lines not framed as the format says are refused with a reason", () => {
    const { bytes } = lineOf(sampleDraft(), { a: 1 });
    const good = decoder.decode(bytes.subarray(0, -1));
    const bad = [
      "",
      "{}",
      '{"other":1}',
      '{"record":{"a":1}}',
      '{"record":' + good.slice(good.indexOf(',"record":') + 10, -1),
      good.replace('{"input":', '{"extra":'),
      good.slice(0, -2),
      good + "}",
      '{"record":{"decision_core_hash":"' + "a".repeat(63) + '"}}',
      '{"record":{"decision_core_hash":"' + "a".repeat(64) + "}}",
    ];
    for (const text of bad) {
      const line = encoder.encode(text);
      assert.throws(() => parseWalLine(line, 0, line.length), Error, text);
    }
  });
});
