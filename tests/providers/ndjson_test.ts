import assert from "node:assert/strict";
import { parseNdjson } from "../../lib/providers/ndjson.ts";

const encoder = new TextEncoder();

async function collect(chunks: Uint8Array[]): Promise<unknown[]> {
  return await Array.fromAsync(parseNdjson(ReadableStream.from(chunks)));
}

const TEXT = '{"message":{"content":"caf"},"done":false}\n{"message":{"content":"é 🙂"},"done":false}\n\n' +
  '{"done":true,"eval_count":2}\n';
const EXPECTED = [
  { message: { content: "caf" }, done: false },
  { message: { content: "é 🙂" }, done: false },
  { done: true, eval_count: 2 },
];

Deno.test("ndjson parsing", async (t) => {
  await t.step("each line becomes one object", async () => {
    assert.deepEqual(await collect([encoder.encode(TEXT)]), EXPECTED);
  });

  await t.step("lines split at every byte offset (inside characters too) parse identically", async () => {
    const bytes = encoder.encode(TEXT);
    for (let i = 0; i <= bytes.length; i++) {
      assert.deepEqual(await collect([bytes.slice(0, i), bytes.slice(i)]), EXPECTED, `split at ${i}`);
    }
  });

  await t.step("a final line without its newline is still parsed", async () => {
    assert.deepEqual(await collect([encoder.encode('{"a":1}\n{"b":'), encoder.encode("2}")]), [{ a: 1 }, {
      b: 2,
    }]);
  });

  await t.step("CRLF line endings are accepted", async () => {
    assert.deepEqual(await collect([encoder.encode('{"a":1}\r\n{"b":2}\r\n')]), [{ a: 1 }, { b: 2 }]);
  });

  await t.step("a line that is not JSON errors the stream", async () => {
    await assert.rejects(collect([encoder.encode('{"a":1}\nnot json\n')]), SyntaxError);
  });
});
