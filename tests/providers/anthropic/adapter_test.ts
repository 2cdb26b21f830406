import assert from "node:assert/strict";
import { AnthropicAdapter } from "../../../lib/providers/anthropic/mod.ts";
import { UpstreamError } from "../../../lib/providers/types.ts";
import type { ChatMessage, ChatRequest, StreamEvent } from "../../../lib/canonical/mod.ts";
import { type FakeAnthropic, startFakeAnthropic } from "../../fakes/fake_anthropic.ts";
import { callOptionsFor } from "../call_helpers.ts";

const KEY = "sk-ant-test";

const callOptions = callOptionsFor("claude-fake-1", 512);

const weatherTool: ChatRequest["tools"] = [{
  type: "function",
  function: {
    name: "get_weather",
    description: "current weather",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
}];

async function collect(
  stream: ReadableStream<StreamEvent>,
): Promise<{ events: StreamEvent[]; error: unknown }> {
  const events: StreamEvent[] = [];
  try {
    for await (const event of stream) events.push(event);
    return { events, error: null };
  } catch (error) {
    return { events, error };
  }
}

async function rejection(promise: Promise<unknown>): Promise<UpstreamError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof UpstreamError, `expected an UpstreamError, got ${error}`);
    return error;
  }
  assert.fail("expected the call to fail");
}

async function withFake(fn: (fake: FakeAnthropic, adapter: AnthropicAdapter) => Promise<void>, key = KEY) {
  const fake = startFakeAnthropic();
  try {
    await fn(fake, new AnthropicAdapter({ baseUrl: fake.url, apiKey: key }));
  } finally {
    await fake.close();
  }
}

Deno.test("the anthropic adapter against a strict fake anthropic", async (t) => {
  await withFake(async (fake, adapter) => {
    await t.step("a plain question gets a text answer with usage and the required headers", async () => {
      const result = await adapter.complete({ messages: [{ role: "user", content: "hi" }] }, callOptions());
      assert.match(result.content ?? "", /Voilà une réponse déterministe ✓ — ça marche 🌍\./);
      assert.equal(result.finish_reason, "stop");
      assert.equal(result.model, "claude-fake-1");
      assert.match(result.upstream_id ?? "", /^msg_fake/);
      assert.ok(result.usage.prompt_tokens > 0 && result.usage.completion_tokens > 0);
      assert.equal(result.usage.total_tokens, result.usage.prompt_tokens + result.usage.completion_tokens);
      const sent = fake.requests.at(-1)!;
      assert.equal(sent.path, "/v1/messages");
      assert.equal(sent.headers["x-api-key"], "<correct>");
      assert.equal(sent.headers["anthropic-version"], "2023-06-01");
      assert.match(sent.headers["content-type"], /application\/json/);
      assert.equal((sent.body as { max_tokens: number }).max_tokens, 512);
    });

    await t.step(
      "a multi-turn conversation with a system prompt is accepted as anthropic wants it",
      async () => {
        const messages: ChatMessage[] = [
          { role: "system", content: "be brief" },
          { role: "user", content: "hi" },
          { role: "assistant", content: "hello" },
          { role: "user", content: "how are you?" },
          { role: "user", content: "and the weather?" },
        ];
        const result = await adapter.complete({ messages, temperature: 0.5, top_p: 1 }, callOptions());
        assert.match(result.content ?? "", /\(3 turns, with system\)/);
        const body = fake.requests.at(-1)!.body as Record<string, unknown>;
        assert.deepEqual(body.system, [{ type: "text", text: "be brief" }]);
        assert.equal(body.temperature, 0.5);
        assert.equal("top_p" in body, false);
      },
    );

    await t.step("a tool call and its result make a full round trip", async () => {
      const question: ChatMessage = { role: "user", content: "weather in Paris?" };
      const first = await adapter.complete({ messages: [question], tools: weatherTool }, callOptions());
      assert.equal(first.finish_reason, "tool_calls");
      assert.equal(first.tool_calls.length, 1);
      const call = first.tool_calls[0];
      assert.equal(call.function.name, "get_weather");
      assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
      assert.match(call.id, /^toolu_/);
      const second = await adapter.complete({
        messages: [
          question,
          { role: "assistant", content: first.content, tool_calls: first.tool_calls },
          { role: "tool", tool_call_id: call.id, content: '{"temp":21}' },
        ],
        tools: weatherTool,
      }, callOptions());
      assert.equal(second.finish_reason, "stop");
      assert.match(second.content ?? "", /1 tool result, 3 turns/);
    });

    await t.step(
      "a streamed answer split at odd byte offsets with pings equals the whole answer",
      async () => {
        const request: ChatRequest = { messages: [{ role: "user", content: "hi" }] };
        const whole = await adapter.complete(request, callOptions());
        const { events, error } = await collect(await adapter.stream(request, callOptions()));
        assert.equal(error, null);
        const text = events.flatMap((e) => e.type === "text" ? [e.text] : []).join("");
        assert.equal(text, whole.content);
        assert.ok(events.filter((e) => e.type === "text").length > 3, "the text arrives in several deltas");
        assert.equal(events.filter((e) => e.type === "finish").length, 1);
        const finish = events.at(-1)!;
        assert.equal(finish.type, "finish");
        assert.equal(finish.type === "finish" && finish.finish_reason, "stop");
        assert.equal(
          finish.type === "finish" && finish.usage?.completion_tokens,
          whole.usage.completion_tokens,
        );
        assert.equal((fake.requests.at(-1)!.body as { stream: boolean }).stream, true);
      },
    );

    await t.step("a streamed tool call arrives as a start and argument fragments", async () => {
      const stream = await adapter.stream({
        messages: [{ role: "user", content: "weather?" }],
        tools: weatherTool,
      }, callOptions());
      const { events, error } = await collect(stream);
      assert.equal(error, null);
      const start = events.find((e) => e.type === "tool_call_start");
      assert.deepEqual(start && { ...start, id: "" }, {
        type: "tool_call_start",
        index: 0,
        id: "",
        name: "get_weather",
      });
      const args = events.flatMap((e) => e.type === "tool_call_args" ? [e.fragment] : []);
      assert.ok(args.length > 1 && args.every((a) => a !== ""));
      assert.deepEqual(JSON.parse(args.join("")), { city: "Paris" });
      const finish = events.at(-1);
      assert.equal(finish?.type === "finish" && finish.finish_reason, "tool_calls");
    });

    await t.step("a request anthropic rejects stays a client error with its message", async () => {
      const error = await rejection(adapter.complete({
        messages: [
          { role: "user", content: "hi" },
          {
            role: "assistant",
            content: null,
            tool_calls: [{ id: "call_1", type: "function", function: { name: "f", arguments: "{}" } }],
          },
          { role: "user", content: "never mind" },
        ],
      }, callOptions()));
      assert.equal(error.status, 400);
      assert.equal(error.code, "UPSTREAM_INVALID_REQUEST");
      assert.equal(error.fallback, false);
      assert.match(error.message, /tool_use. ids were found without .tool_result/);
    });

    await t.step("a tool name anthropic does not allow is a 400", async () => {
      const error = await rejection(adapter.complete({
        messages: [{ role: "user", content: "hi" }],
        tools: [{ type: "function", function: { name: "get weather" } }],
      }, callOptions()));
      assert.equal(error.status, 400);
      assert.equal(error.fallback, false);
    });
  });
});

Deno.test("anthropic failures surface as fallback-worthy errors, never as a finish", async (t) => {
  const request: ChatRequest = { messages: [{ role: "user", content: "hi" }] };
  const modes = [
    { mode: "rate_limit", status: 429, code: "UPSTREAM_RATE_LIMITED", retryAfter: 7 },
    { mode: "overloaded", status: 503, code: "UPSTREAM_OVERLOADED", retryAfter: 7 },
    { mode: "error500", status: 502, code: "UPSTREAM_UNAVAILABLE" },
  ] as const;
  await withFake(async (fake, adapter) => {
    for (const row of modes) {
      await t.step(`${row.mode}: complete and stream both reject before any event`, async () => {
        fake.mode = row.mode;
        for (
          const call of [adapter.complete(request, callOptions()), adapter.stream(request, callOptions())]
        ) {
          const error = await rejection(call);
          assert.equal(error.status, row.status);
          assert.equal(error.code, row.code);
          assert.equal(error.fallback, true);
          if ("retryAfter" in row) assert.equal(error.retryAfter, row.retryAfter);
        }
      });
    }

    await t.step("a mid-stream overloaded event errors the stream after the text it sent", async () => {
      fake.mode = "midstream_error";
      const { events, error } = await collect(await adapter.stream(request, callOptions()));
      assert.ok(events.some((e) => e.type === "text"));
      assert.equal(events.some((e) => e.type === "finish"), false);
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.code, "UPSTREAM_OVERLOADED");
      assert.equal(error.fallback, false);
    });

    await t.step("a stream cut before message_stop is an error", async () => {
      fake.mode = "cut_stream";
      const { events, error } = await collect(await adapter.stream(request, callOptions()));
      assert.ok(events.some((e) => e.type === "text"));
      assert.equal(events.some((e) => e.type === "finish"), false);
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.code, "UPSTREAM_STREAM_CUT");
    });

    await t.step("a non-streamed answer cut short is an error", async () => {
      fake.mode = "cut_stream";
      const error = await rejection(adapter.complete(request, callOptions()));
      assert.equal(error.code, "UPSTREAM_BAD_RESPONSE");
      assert.equal(error.fallback, true);
    });

    await t.step("the caller's abort reaches anthropic", async () => {
      fake.mode = "hang";
      const controller = new AbortController();
      const before = fake.requests.length;
      const call = adapter.complete(request, callOptions({ signal: controller.signal }));
      await fake.waitForRequests(before + 1);
      controller.abort();
      const error = await rejection(call);
      assert.equal(error.code, "CLIENT_ABORTED");
      await fake.waitForAborted(1);
    });

    await t.step("an upstream that never answers hits the first-byte timeout and may fall back", async () => {
      fake.mode = "hang";
      const error = await rejection(adapter.stream(request, callOptions({ firstByteTimeoutMs: 150 })));
      assert.equal(error.code, "UPSTREAM_TIMEOUT");
      assert.equal(error.fallback, true);
      await fake.waitForAborted(2);
    });
  });

  await t.step("a wrong api key is our fault: 502, fallback, and the key is never echoed", async () => {
    await withFake(async (_fake, adapter) => {
      const error = await rejection(adapter.complete(request, callOptions()));
      assert.equal(error.status, 502);
      assert.equal(error.code, "UPSTREAM_AUTH_FAILED");
      assert.equal(error.fallback, true);
      assert.equal(error.message.includes("sk-ant-wrong-key"), false);
    }, "sk-ant-wrong-key");
  });
});

Deno.test("the fake anthropic enforces what the real api enforces", async (t) => {
  const fake = startFakeAnthropic();
  const post = async (body: unknown, headers: Record<string, string | null> = {}) => {
    const all: Record<string, string> = {};
    for (
      const [k, v] of Object.entries({
        "x-api-key": KEY,
        "anthropic-version": "2023-06-01",
        "content-type": "application/json",
        ...headers,
      })
    ) if (v !== null) all[k] = v;
    const response = await fetch(`${fake.url}/v1/messages`, {
      method: "POST",
      headers: all,
      body: JSON.stringify(body),
    });
    return { status: response.status, body: await response.json() };
  };
  const ok = { model: "claude-fake-1", max_tokens: 20, messages: [{ role: "user", content: "hi" }] };
  try {
    const rows: {
      name: string;
      body: unknown;
      headers?: Record<string, string | null>;
      status: number;
      type: string;
    }[] = [
      {
        name: "no x-api-key",
        body: ok,
        headers: { "x-api-key": null },
        status: 401,
        type: "authentication_error",
      },
      {
        name: "a wrong x-api-key",
        body: ok,
        headers: { "x-api-key": "sk-ant-nope" },
        status: 401,
        type: "authentication_error",
      },
      {
        name: "no anthropic-version",
        body: ok,
        headers: { "anthropic-version": null },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "no max_tokens",
        body: { ...ok, max_tokens: undefined },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "a system role in messages",
        body: { ...ok, messages: [{ role: "system", content: "x" }, ...ok.messages] },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "a first message from the assistant",
        body: { ...ok, messages: [{ role: "assistant", content: "x" }, ...ok.messages] },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "an unanswered tool_use",
        body: {
          ...ok,
          messages: [
            ...ok.messages,
            { role: "assistant", content: [{ type: "tool_use", id: "t1", name: "f", input: {} }] },
            { role: "user", content: "ok" },
          ],
        },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "temperature above 1",
        body: { ...ok, temperature: 1.2 },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "an empty text block",
        body: { ...ok, messages: [{ role: "user", content: [{ type: "text", text: "" }] }] },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "an image with a data-url prefix",
        body: {
          ...ok,
          messages: [{
            role: "user",
            content: [{
              type: "image",
              source: { type: "base64", media_type: "image/png", data: "data:image/png;base64,xx" },
            }],
          }],
        },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "a bad tool name",
        body: { ...ok, tools: [{ name: "a b", input_schema: { type: "object" } }] },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "an unknown top-level field",
        body: { ...ok, seed: 1 },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "temperature together with top_p",
        body: { ...ok, temperature: 0.5, top_p: 0.9 },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "temperature under api version 2026-10-21",
        body: { ...ok, temperature: 1 },
        headers: { "anthropic-version": "2026-10-21" },
        status: 400,
        type: "invalid_request_error",
      },
      {
        name: "an unknown api version",
        body: ok,
        headers: { "anthropic-version": "2024-01-01" },
        status: 400,
        type: "invalid_request_error",
      },
    ];
    for (const row of rows) {
      await t.step(`refuses ${row.name}`, async () => {
        const { status, body } = await post(row.body, row.headers);
        assert.equal(status, row.status);
        assert.equal(body.type, "error");
        assert.equal(body.error.type, row.type);
      });
    }
    await t.step("takes the key as a bearer token, as current sdks send it", async () => {
      const { status } = await post(ok, { "x-api-key": null, authorization: `Bearer ${KEY}` });
      assert.equal(status, 200);
    });
    await t.step("answers a valid request and never echoes the prompt", async () => {
      const { status, body } = await post({
        ...ok,
        messages: [{ role: "user", content: "SECRET-PROMPT-WORDS" }],
      });
      assert.equal(status, 200);
      assert.equal(JSON.stringify(body).includes("SECRET-PROMPT-WORDS"), false);
    });
    await t.step("lists models", async () => {
      const response = await fetch(`${fake.url}/v1/models`, {
        headers: { "x-api-key": KEY, "anthropic-version": "2023-06-01" },
      });
      const body = await response.json();
      assert.equal(response.status, 200);
      assert.deepEqual(body.data.map((m: { id: string }) => m.id), ["claude-fake-1", "claude-fake-2"]);
      assert.equal(body.has_more, false);
    });
  } finally {
    await fake.close();
  }
});
