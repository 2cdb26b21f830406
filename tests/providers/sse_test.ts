import assert from "node:assert/strict";
import { encodeSseEvent } from "../../lib/inbound/sse.ts";
import { parseSse, type SseEvent } from "../../lib/providers/sse.ts";

function bodyOf(chunks: Uint8Array[]): ReadableStream<Uint8Array> {
  return ReadableStream.from(chunks);
}

async function collect(chunks: Uint8Array[]): Promise<SseEvent[]> {
  return await Array.fromAsync(parseSse(bodyOf(chunks)));
}

const encoder = new TextEncoder();

const SAMPLE = [
  ": keep-alive comment\n",
  "event: message_start\n",
  'data: {"text":"héllo 🙂"}\n',
  "\n",
  "data: line one\n",
  "data: line two\n",
  "\n",
  "event: ping\r\n",
  "data: {}\r\n",
  "\r\n",
  "data:no-space\n",
  "id: 7\n",
  "retry: 100\n",
  "\n",
  "data: [DONE]\n\n",
].join("");

const EXPECTED: SseEvent[] = [
  { event: "message_start", data: '{"text":"héllo 🙂"}' },
  { event: null, data: "line one\nline two" },
  { event: "ping", data: "{}" },
  { event: null, data: "no-space" },
  { event: null, data: "[DONE]" },
];

Deno.test("sse parsing", async (t) => {
  await t.step("a whole body parses into its events", async () => {
    assert.deepEqual(await collect([encoder.encode(SAMPLE)]), EXPECTED);
  });

  await t.step("a body split at every byte offset parses identically", async () => {
    const bytes = encoder.encode(SAMPLE);
    for (let i = 0; i <= bytes.length; i++) {
      assert.deepEqual(await collect([bytes.slice(0, i), bytes.slice(i)]), EXPECTED, `split at ${i}`);
    }
  });

  await t.step("a body sent one byte at a time parses identically", async () => {
    const bytes = encoder.encode(SAMPLE);
    assert.deepEqual(await collect([...bytes].map((b) => new Uint8Array([b]))), EXPECTED);
  });

  await t.step("CRLF, lone CR and LF line endings all end lines", async () => {
    const text = "data: a\r\ndata: b\rdata: c\n\r\nevent: x\rdata: y\r\r";
    const bytes = encoder.encode(text);
    for (let i = 0; i <= bytes.length; i++) {
      assert.deepEqual(await collect([bytes.slice(0, i), bytes.slice(i)]), [
        { event: null, data: "a\nb\nc" },
        { event: "x", data: "y" },
      ], `split at ${i}`);
    }
  });

  await t.step("comment lines and events without data are not events", async () => {
    assert.deepEqual(await collect([encoder.encode(": ping\n\n: again\n\nevent: lonely\n\n")]), []);
  });

  await t.step("an empty data line is an event with empty data", async () => {
    assert.deepEqual(await collect([encoder.encode("data:\n\n")]), [{ event: null, data: "" }]);
  });

  await t.step("an unterminated last event is discarded as the spec says", async () => {
    assert.deepEqual(await collect([encoder.encode("data: whole\n\ndata: half")]), [{
      event: null,
      data: "whole",
    }]);
  });

  await t.step("encodeSseEvent round-trips through the parser, multi-line data included", async () => {
    const text = encodeSseEvent("one") + encodeSseEvent('{"a":1}', "named") + encodeSseEvent("x\ny");
    assert.equal(encodeSseEvent("one"), "data: one\n\n");
    assert.equal(encodeSseEvent("{}", "ping"), "event: ping\ndata: {}\n\n");
    assert.deepEqual(await collect([encoder.encode(text)]), [
      { event: null, data: "one" },
      { event: "named", data: '{"a":1}' },
      { event: null, data: "x\ny" },
    ]);
  });
});
