/** Anthropic's streamed events and error statuses, as the router reads them back. */
import assert from "node:assert/strict";
import { anthropicEventDecoder } from "../../../lib/providers/anthropic/mod.ts";
import { type SseEvent } from "../../../lib/providers/sse.ts";
import { decodeEventStream } from "../../../lib/providers/event_stream.ts";
import { upstreamHttpError } from "../../../lib/providers/http_errors.ts";
import type { StreamEvent } from "../../../lib/canonical/mod.ts";
import { UpstreamError } from "../../../lib/providers/types.ts";

function ev(type: string, data: Record<string, unknown> = {}, named = true): SseEvent {
  return { event: named ? type : null, data: JSON.stringify({ type, ...data }) };
}

async function run(events: SseEvent[]): Promise<{ events: StreamEvent[]; error: unknown }> {
  const source = ReadableStream.from(events);
  const out: StreamEvent[] = [];
  try {
    for await (
      const event of decodeEventStream(source, anthropicEventDecoder(), { provider: "anthropic" })
    ) out.push(event);
    return { events: out, error: null };
  } catch (error) {
    return { events: out, error };
  }
}

const START = ev("message_start", {
  message: {
    id: "msg_1",
    content: [],
    usage: { input_tokens: 26, output_tokens: 1, cache_read_input_tokens: 4 },
  },
});
const TEXT_BLOCK = ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } });
const delta = (index: number, text: string) =>
  ev("content_block_delta", { index, delta: { type: "text_delta", text } });
const json = (index: number, partial_json: string) =>
  ev("content_block_delta", { index, delta: { type: "input_json_delta", partial_json } });
const tool = (index: number, id: string, name: string) =>
  ev("content_block_start", { index, content_block: { type: "tool_use", id, name, input: {} } });
const stop = (index: number) => ev("content_block_stop", { index });
const messageDelta = (stop_reason: string, output_tokens: number) =>
  ev("message_delta", { delta: { stop_reason, stop_sequence: null }, usage: { output_tokens } });
const PING = ev("ping");
const END = ev("message_stop");

Deno.test("anthropic stream events become canonical stream events", async (t) => {
  await t.step("text deltas with pings interleaved end in one finish with usage", async () => {
    const { events, error } = await run([
      START,
      PING,
      TEXT_BLOCK,
      delta(0, "Hel"),
      PING,
      delta(0, "lo ✓"),
      stop(0),
      messageDelta("end_turn", 7),
      messageDelta("end_turn", 9),
      END,
    ]);
    assert.equal(error, null);
    assert.deepEqual(events, [
      {
        type: "prompt_usage",
        usage: { prompt_tokens: 30, completion_tokens: 0, total_tokens: 30 },
        usage_details: { cached_tokens: 4 },
      },
      { type: "text", text: "Hel" },
      { type: "text", text: "lo ✓" },
      {
        type: "finish",
        finish_reason: "stop",
        usage: { prompt_tokens: 30, completion_tokens: 9, total_tokens: 39 },
        usage_details: { cached_tokens: 4 },
      },
    ]);
  });

  await t.step(
    "tool_use blocks count tool indexes apart from block indexes and skip empty fragments",
    async () => {
      const { events, error } = await run([
        START,
        TEXT_BLOCK,
        delta(0, "checking"),
        stop(0),
        tool(1, "toolu_a", "get_weather"),
        json(1, ""),
        json(1, '{"city": "Par'),
        json(1, 'is"}'),
        stop(1),
        tool(2, "toolu_b", "get_time"),
        json(2, "{}"),
        stop(2),
        messageDelta("tool_use", 40),
        END,
      ]);
      assert.equal(error, null);
      assert.deepEqual(events, [
        {
          type: "prompt_usage",
          usage: { prompt_tokens: 30, completion_tokens: 0, total_tokens: 30 },
          usage_details: { cached_tokens: 4 },
        },
        { type: "text", text: "checking" },
        { type: "tool_call_start", index: 0, id: "toolu_a", name: "get_weather" },
        { type: "tool_call_args", index: 0, fragment: '{"city": "Par' },
        { type: "tool_call_args", index: 0, fragment: 'is"}' },
        { type: "tool_call_start", index: 1, id: "toolu_b", name: "get_time" },
        { type: "tool_call_args", index: 1, fragment: "{}" },
        {
          type: "finish",
          finish_reason: "tool_calls",
          usage: { prompt_tokens: 30, completion_tokens: 40, total_tokens: 70 },
          usage_details: { cached_tokens: 4 },
        },
      ]);
    },
  );

  await t.step("events without event lines are dispatched by their data type", async () => {
    const { events } = await run([
      { event: null, data: START.data },
      ev("content_block_start", { index: 0, content_block: { type: "text", text: "" } }, false),
      ev("content_block_delta", { index: 0, delta: { type: "text_delta", text: "x" } }, false),
      ev("message_delta", { delta: { stop_reason: "max_tokens" }, usage: { output_tokens: 1 } }, false),
      ev("message_stop", {}, false),
    ]);
    assert.deepEqual(events.map((e) => e.type), ["prompt_usage", "text", "finish"]);
    assert.equal((events[2] as { finish_reason: string }).finish_reason, "length");
  });

  const failures: { name: string; events: SseEvent[]; code: string; status: number }[] = [
    {
      name: "an overloaded error event after some text fails the stream as UPSTREAM_OVERLOADED",
      events: [
        START,
        TEXT_BLOCK,
        delta(0, "Hel"),
        ev("error", { error: { type: "overloaded_error", message: "Overloaded" } }),
      ],
      code: "UPSTREAM_OVERLOADED",
      status: 503,
    },
    {
      name: "an api_error event fails the stream",
      events: [START, ev("error", { error: { type: "api_error", message: "boom" } })],
      code: "UPSTREAM_STREAM_ERROR",
      status: 502,
    },
    {
      name: "a stream that ends without message_stop is a cut, never a finish",
      events: [START, TEXT_BLOCK, delta(0, "Hel"), stop(0), messageDelta("end_turn", 3)],
      code: "UPSTREAM_STREAM_CUT",
      status: 502,
    },
    {
      name: "an empty stream is a cut",
      events: [],
      code: "UPSTREAM_STREAM_CUT",
      status: 502,
    },
  ];
  for (const row of failures) {
    await t.step(row.name, async () => {
      const { events, error } = await run(row.events);
      assert.ok(error instanceof UpstreamError, String(error));
      assert.equal(error.code, row.code);
      assert.equal(error.status, row.status);
      assert.equal(events.some((e) => e.type === "finish"), false);
    });
  }

  await t.step("an overload before any content may fall back; after content it may not", async () => {
    const early = await run([
      START,
      ev("error", { error: { type: "overloaded_error", message: "Overloaded" } }),
    ]);
    const late = await run([
      START,
      TEXT_BLOCK,
      delta(0, "x"),
      ev("error", { error: { type: "overloaded_error" } }),
    ]);
    assert.equal((early.error as UpstreamError).fallback, true);
    assert.equal((late.error as UpstreamError).fallback, false);
  });
});

Deno.test("anthropic http errors map to what our client sees", async (t) => {
  const body = (type: string, message: string) => ({ type: "error", error: { type, message } });
  const rows: {
    status: number;
    type: string;
    expect: { status: number; code: string; fallback: boolean; retryAfter?: number };
  }[] = [
    {
      status: 400,
      type: "invalid_request_error",
      expect: { status: 400, code: "UPSTREAM_INVALID_REQUEST", fallback: false },
    },
    {
      status: 404,
      type: "not_found_error",
      expect: { status: 404, code: "UPSTREAM_NOT_FOUND", fallback: false },
    },
    {
      status: 413,
      type: "request_too_large",
      expect: { status: 413, code: "UPSTREAM_REQUEST_TOO_LARGE", fallback: false },
    },
    {
      status: 401,
      type: "authentication_error",
      expect: { status: 502, code: "UPSTREAM_AUTH_FAILED", fallback: true },
    },
    {
      status: 403,
      type: "permission_error",
      expect: { status: 502, code: "UPSTREAM_AUTH_FAILED", fallback: true },
    },
    {
      status: 429,
      type: "rate_limit_error",
      expect: { status: 429, code: "UPSTREAM_RATE_LIMITED", fallback: true, retryAfter: 7 },
    },
    {
      status: 529,
      type: "overloaded_error",
      expect: { status: 503, code: "UPSTREAM_OVERLOADED", fallback: true, retryAfter: 7 },
    },
    { status: 500, type: "api_error", expect: { status: 502, code: "UPSTREAM_UNAVAILABLE", fallback: true } },
  ];
  for (const row of rows) {
    await t.step(`${row.status} ${row.type}`, () => {
      const error = upstreamHttpError(
        "anthropic",
        row.status,
        body(row.type, "upstream says no"),
        new Headers({ "retry-after": "7" }),
      );
      assert.equal(error.status, row.expect.status);
      assert.equal(error.code, row.expect.code);
      assert.equal(error.fallback, row.expect.fallback);
      assert.equal(error.upstreamStatus, row.status);
      if (row.expect.retryAfter !== undefined) assert.equal(error.retryAfter, row.expect.retryAfter);
      if (row.expect.status === 400) assert.match(error.message, /upstream says no/);
    });
  }
});

// ---- round trip --------------------------------------------------------------------------------
