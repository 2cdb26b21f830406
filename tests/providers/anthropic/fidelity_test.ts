/** Anthropic both ways without the network: refusals by name, the client's own body, and the answer's fields. */
import assert from "node:assert/strict";
import {
  checkAnthropicSupport,
  FIRST_TURN_USER_TEXT,
  toAnthropicRequest,
} from "../../../lib/providers/anthropic/mod.ts";
import { requestFeatures } from "../../../lib/pipeline/request_features.ts";
import {
  anthropicErrorBody,
  type AnthropicMessagesRequest,
  anthropicMessagesRequestSchema,
  AnthropicStreamEncoder,
  fromAnthropicRequest,
  toAnthropicResponse,
} from "../../../lib/inbound/anthropic/mod.ts";
import type { ChatRequest, StreamEvent } from "../../../lib/canonical/mod.ts";
import { UpstreamError } from "../../../lib/providers/types.ts";

const OPTS = { model: "claude-x", defaultMaxTokens: 1024, stream: false };
const hi = { role: "user" as const, content: "hi" };

function refusal(request: ChatRequest): UpstreamError {
  try {
    toAnthropicRequest(request, OPTS);
  } catch (error) {
    assert.ok(error instanceof UpstreamError);
    return error;
  }
  assert.fail("expected a refusal");
}

Deno.test("what Anthropic cannot honour is refused by name, fallback-worthy, never clamped or dropped", async (t) => {
  const rows: [string, ChatRequest, string][] = [
    ["temperature above 1", { messages: [hi], temperature: 1.2 }, "temperature"],
    ["top_p other than 1 beside temperature", { messages: [hi], temperature: 0.3, top_p: 0.8 }, "top_p"],
    ["seed", { messages: [hi], seed: 1 }, "seed"],
    ["a presence penalty", { messages: [hi], presence_penalty: 0.5 }, "presence_penalty"],
    ["a frequency penalty", { messages: [hi], frequency_penalty: -1 }, "frequency_penalty"],
  ];
  for (const [name, request, param] of rows) {
    await t.step(name, () => {
      const error = refusal(request);
      assert.equal(error.status, 400);
      assert.equal(error.code, "UNSUPPORTED_FIELD");
      assert.equal(error.param, param);
      assert.equal(error.fallback, true, "the next candidate may honour it");
      assert.match(error.message, /^[a-z].*[^.]$/, "one sentence, lower-case start, no trailing period");
    });
  }
  await t.step("values that change nothing pass", () => {
    checkAnthropicSupport({
      messages: [hi],
      temperature: 1,
      top_p: 1,
      presence_penalty: 0,
      frequency_penalty: 0,
    });
  });
});

Deno.test("the two message-shape rewrites are minimal and exactly what the request features announce", async (t) => {
  await t.step(
    "a late system message is hoisted into system after the earlier ones, text and order kept",
    () => {
      const body = toAnthropicRequest({
        messages: [
          { role: "system", content: "Be terse." },
          hi,
          { role: "assistant", content: "hello" },
          { role: "developer", content: [{ type: "text", text: "Now answer in French." }] },
          { role: "user", content: "how are you?" },
        ],
      }, OPTS);
      assert.deepEqual(body.system, [
        { type: "text", text: "Be terse." },
        { type: "text", text: "Now answer in French." },
      ]);
      assert.deepEqual(body.messages, [
        { role: "user", content: [{ type: "text", text: "hi" }] },
        { role: "assistant", content: [{ type: "text", text: "hello" }] },
        { role: "user", content: [{ type: "text", text: "how are you?" }] },
      ]);
    },
  );

  await t.step("a history that opens with the assistant gets one minimal user turn before it", () => {
    const body = toAnthropicRequest({ messages: [{ role: "assistant", content: "hello!" }, hi] }, OPTS);
    assert.deepEqual(body.messages, [
      { role: "user", content: [{ type: "text", text: FIRST_TURN_USER_TEXT }] },
      { role: "assistant", content: [{ type: "text", text: "hello!" }] },
      { role: "user", content: [{ type: "text", text: "hi" }] },
    ]);
    assert.equal(body.system, undefined);
  });

  // [name, messages, has a late system message]: whether the assistant opens is read off the adapter's body.
  const cases: [string, ChatRequest["messages"], boolean][] = [
    ["plain", [{ role: "system", content: "s" }, hi], false],
    ["late system", [hi, { role: "system", content: "later" }, hi], true],
    ["assistant first", [{ role: "system", content: "s" }, { role: "assistant", content: "a" }, hi], false],
    [
      "empty user text is no turn",
      [{ role: "user", content: "" }, { role: "system", content: "s" }, hi],
      false,
    ],
    ["empty user text, then the assistant", [
      { role: "user", content: "" },
      { role: "assistant", content: "a" },
      hi,
    ], false],
    ["a tool result opens", [{ role: "tool", tool_call_id: "t", content: "r" }, {
      role: "system",
      content: "s",
    }, hi], true],
    ["an assistant tool call opens", [{
      role: "assistant",
      content: null,
      tool_calls: [{ id: "t", type: "function", function: { name: "f", arguments: "{}" } }],
    }, { role: "tool", tool_call_id: "t", content: "r" }], false],
  ];
  for (const [name, messages, late] of cases) {
    await t.step(`features and adapter agree: ${name}`, () => {
      const features = requestFeatures({ messages });
      const body = toAnthropicRequest({ messages }, OPTS);
      assert.equal(features.has_late_system === true, late);
      const systems = messages.filter((m) => m.role === "system").length;
      assert.equal(body.system?.length ?? 0, systems, "every system message reaches system");
      const invented = JSON.stringify(body.messages[0]).includes(FIRST_TURN_USER_TEXT);
      assert.equal(features.opens_with_assistant === true, invented);
      assert.equal(body.messages[0].role, "user");
    });
  }

  await t.step("a /v1/messages request announces no rewrite: its body goes to Anthropic as sent", () => {
    const canonical = fromAnthropicRequest(anthropicMessagesRequestSchema.parse({
      model: "auto",
      max_tokens: 10,
      temperature: 0.5,
      top_p: 0.9,
      messages: [{ role: "assistant", content: "a" }, { role: "user", content: "q" }],
    }));
    const features = requestFeatures(canonical);
    assert.equal(features.opens_with_assistant, undefined);
    assert.equal(features.provider_fields, undefined);
    assert.deepEqual(toAnthropicRequest(canonical, OPTS).messages[0], { role: "assistant", content: "a" });
  });
});

const NATIVE: AnthropicMessagesRequest = anthropicMessagesRequestSchema.parse({
  model: "auto",
  max_tokens: 100,
  top_k: 3,
  system: [{ type: "text", text: "long prefix", cache_control: { type: "ephemeral" } }],
  tools: [{
    name: "f",
    input_schema: { type: "object" },
    eager_input_streaming: true,
    cache_control: { type: "ephemeral" },
  }],
  messages: [
    { role: "user", content: "q" },
    {
      role: "assistant",
      content: [
        { type: "thinking", thinking: "local thought", signature: "" },
        { type: "thinking", thinking: "claude thought", signature: "sig" },
        { type: "tool_use", id: "t1", name: "f", input: {} },
      ],
    },
    { role: "user", content: [{ type: "tool_result", tool_use_id: "t1", content: "boom", is_error: true }] },
  ],
  output_config: { format: { type: "json_schema", schema: { type: "object" } } },
});

Deno.test("a /v1/messages request reaches Anthropic as the client sent it", async (t) => {
  const canonical = fromAnthropicRequest(NATIVE);
  await t.step("only model and stream are set; unsigned (local) thinking blocks are left out", () => {
    const body = toAnthropicRequest(canonical, { ...OPTS, stream: true });
    const expected = structuredClone(NATIVE);
    expected.model = "claude-x";
    expected.stream = true;
    (expected.messages[1].content as unknown[]).shift();
    assert.deepEqual(body, expected);
  });
  await t.step(
    "the client's body is not part of the canonical request's JSON (hash, other upstreams)",
    () => {
      const json = JSON.parse(JSON.stringify(canonical));
      assert.equal(JSON.stringify(json).includes("cache_control"), false);
    },
  );
  await t.step("for the other upstreams, output_config is the json_schema response_format", () => {
    assert.deepEqual(canonical.response_format, {
      type: "json_schema",
      json_schema: { name: "output", schema: { type: "object" } },
    });
  });
});

function decode(parts: Uint8Array[]): { event: string; data: Record<string, unknown> }[] {
  const text = new TextDecoder().decode(
    parts.reduce((a, b) => new Uint8Array([...a, ...b]), new Uint8Array()),
  );
  return text.split("\n\n").filter((e) => e.trim() !== "").map((e) => {
    const lines = e.split("\n");
    return {
      event: lines.find((l) => l.startsWith("event: "))!.slice(7),
      data: JSON.parse(lines.find((l) => l.startsWith("data: "))!.slice(6)),
    };
  });
}

const META = { id: "msg_1", created: 0, model: "m" };
const USAGE = { prompt_tokens: 50, completion_tokens: 5, total_tokens: 55 };

Deno.test("the answer in Anthropic's format keeps what Anthropic said", async (t) => {
  await t.step("message_start carries the upstream's exact prompt counts when they came first", () => {
    const encoder = new AnthropicStreamEncoder(META, { inputTokens: 3 });
    const events: StreamEvent[] = [
      { type: "prompt_usage", usage: USAGE, usage_details: { cached_tokens: 40, cache_creation_tokens: 2 } },
      { type: "text", text: "x" },
    ];
    const out = decode([encoder.start(), ...events.map((e) => encoder.encode(e))]);
    assert.deepEqual((out[0].data.message as { usage: unknown }).usage, {
      input_tokens: 8,
      cache_creation_input_tokens: 2,
      cache_read_input_tokens: 40,
      output_tokens: 0,
    });
  });
  await t.step("without them, message_start has the estimate and goes out with the first piece", () => {
    const encoder = new AnthropicStreamEncoder(META, { inputTokens: 3 });
    assert.equal(encoder.start().length, 0);
    const out = decode([encoder.encode({ type: "reasoning", text: "hmm" })]);
    assert.deepEqual(out.map((e) => e.event), [
      "message_start",
      "content_block_start",
      "content_block_delta",
    ]);
    assert.equal((out[0].data.message as { usage: { input_tokens: number } }).usage.input_tokens, 3);
    assert.deepEqual(out[1].data.content_block, { type: "thinking", thinking: "", signature: "" });
    assert.deepEqual(out[2].data.delta, { type: "thinking_delta", thinking: "hmm" });
  });
  await t.step("a matched stop sequence and a paused turn keep their names", () => {
    const encoder = new AnthropicStreamEncoder(META);
    const out = decode([
      encoder.encode({
        type: "finish",
        finish_reason: "stop",
        usage: USAGE,
        stop_detail: { stop_sequence: "END" },
      }),
    ]);
    assert.deepEqual(out.at(-1)!.data.delta, { stop_reason: "stop_sequence", stop_sequence: "END" });
    const message = toAnthropicResponse({
      model: "m",
      content: "x",
      tool_calls: [],
      finish_reason: "stop",
      usage: USAGE,
      stop_detail: { paused: true },
    }, META);
    assert.equal(message.stop_reason, "pause_turn");
  });
  await t.step("an upstream overload is overloaded_error; a 503 refusal is api_error", () => {
    const overload = anthropicErrorBody({
      message: "m",
      type: "t",
      code: "UPSTREAM_OVERLOADED",
      status: 503,
    });
    assert.equal(overload.error.type, "overloaded_error");
    const refusal = anthropicErrorBody({
      message: "m",
      type: "t",
      code: "LOCAL_UNAVAILABLE_FOR_SENSITIVE",
      status: 503,
    });
    assert.equal(refusal.error.type, "api_error");
  });
});
