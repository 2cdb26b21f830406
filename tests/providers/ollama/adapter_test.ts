import assert from "node:assert/strict";
import { OllamaAdapter, toOllamaRequest } from "../../../lib/providers/ollama/mod.ts";
import { UpstreamError } from "../../../lib/providers/types.ts";
import type { ChatRequest, StreamEvent } from "../../../lib/canonical/mod.ts";
import { startFakeOllama } from "../../fakes/fake_ollama.ts";
import { callOptionsFor, rejectsWith } from "../call_helpers.ts";

const callOptions = callOptionsFor("qwen3:8b");

const HELLO: ChatRequest = {
  messages: [{ role: "system", content: "be brief" }, { role: "user", content: "say hello" }],
  seed: 42,
  temperature: 0,
};

const WEATHER_TOOL = {
  type: "function" as const,
  function: { name: "get_weather", description: "weather", parameters: { type: "object" } },
};

async function readAll(stream: ReadableStream<StreamEvent>): Promise<StreamEvent[]> {
  return await Array.fromAsync(stream);
}

Deno.test("ollama adapter: request translation", async (t) => {
  await t.step("system and developer messages become system messages; stream is always explicit", () => {
    const body = toOllamaRequest({
      messages: [
        { role: "developer", content: "rule" },
        { role: "system", content: [{ type: "text", text: "a" }, { type: "text", text: "b" }] },
        { role: "user", content: "hi", name: "bob" },
      ],
    }, { model: "qwen3:8b", stream: false });
    assert.deepEqual(body, {
      model: "qwen3:8b",
      messages: [
        { role: "system", content: "rule" },
        { role: "system", content: "a\nb" },
        { role: "user", content: "hi" },
      ],
      stream: false,
    });
  });

  await t.step("user images given as data urls go to images as bare base64", () => {
    const body = toOllamaRequest({
      messages: [{
        role: "user",
        content: [
          { type: "text", text: "what is" },
          { type: "image_url", image_url: { url: "data:image/png;base64,iVBORw0KGgo=" } },
          { type: "text", text: "this?" },
        ],
      }],
    }, { model: "m", stream: true });
    assert.deepEqual(body.messages, [{ role: "user", content: "what is\nthis?", images: ["iVBORw0KGgo="] }]);
  });

  await t.step("an http image url is refused locally but a cloud candidate may take it", () => {
    try {
      toOllamaRequest({
        messages: [{
          role: "user",
          content: [{ type: "image_url", image_url: { url: "https://x.test/cat.png" } }],
        }],
      }, { model: "m", stream: false });
      assert.fail("expected an error");
    } catch (error) {
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.code, "IMAGE_URL_NOT_SUPPORTED_LOCALLY");
      assert.equal(error.status, 400);
      assert.equal(error.type, "invalid_request_error");
      assert.equal(error.fallback, true);
    }
  });

  await t.step("assistant tool calls get object arguments and tool results get the tool's name", () => {
    const body = toOllamaRequest({
      messages: [
        { role: "user", content: "weather?" },
        {
          role: "assistant",
          content: null,
          tool_calls: [{
            id: "call_1",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Paris"}' },
          }],
        },
        { role: "tool", tool_call_id: "call_1", content: '{"temp":21}' },
      ],
      tools: [WEATHER_TOOL],
    }, { model: "m", stream: false });
    assert.deepEqual(body.messages, [
      { role: "user", content: "weather?" },
      {
        role: "assistant",
        content: "",
        tool_calls: [{ function: { name: "get_weather", arguments: { city: "Paris" } } }],
      },
      { role: "tool", content: '{"temp":21}', tool_name: "get_weather" },
    ]);
    assert.deepEqual(body.tools, [WEATHER_TOOL]);
  });

  await t.step("tool-call arguments that are not JSON are the client's error", () => {
    try {
      toOllamaRequest({
        messages: [{
          role: "assistant",
          content: null,
          tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }],
        }],
      }, { model: "m", stream: false });
      assert.fail("expected an error");
    } catch (error) {
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.code, "INVALID_TOOL_ARGUMENTS");
      assert.equal(error.status, 400);
      assert.equal(error.fallback, false);
    }
  });

  await t.step("tools are left out when tool_choice is none", () => {
    const body = toOllamaRequest({
      messages: [{ role: "user", content: "x" }],
      tools: [WEATHER_TOOL],
      tool_choice: "none",
    }, {
      model: "m",
      stream: false,
    });
    assert.equal("tools" in body, false);
  });

  await t.step("json modes become format, sampling fields become options, keep_alive passes", () => {
    const schema = { type: "object", properties: { a: { type: "string" } } };
    const json = toOllamaRequest({ messages: [], response_format: { type: "json_object" } }, {
      model: "m",
      stream: false,
    });
    assert.equal(json.format, "json");
    const structured = toOllamaRequest({
      messages: [],
      response_format: { type: "json_schema", json_schema: { name: "x", schema } },
    }, { model: "m", stream: false });
    assert.deepEqual(structured.format, schema);
    const body = toOllamaRequest({
      messages: [],
      temperature: 0,
      top_p: 0.9,
      seed: 42,
      max_tokens: 100,
      max_completion_tokens: 256,
      stop: "\n\n",
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
    }, { model: "m", stream: true, keepAlive: "5m" });
    assert.deepEqual(body.options, {
      temperature: 0,
      top_p: 0.9,
      seed: 42,
      num_predict: 256,
      stop: ["\n\n"],
      presence_penalty: 0.5,
      frequency_penalty: 0.25,
    });
    assert.equal(body.stream, true);
    assert.equal(body.keep_alive, "5m");
    assert.deepEqual(
      toOllamaRequest({ messages: [], max_tokens: 7 }, { model: "m", stream: false }).options,
      { num_predict: 7 },
    );
  });

  await t.step("the policy's context window goes out as num_ctx", () => {
    const body = toOllamaRequest({ messages: [] }, { model: "m", stream: false, contextWindow: 32768 });
    assert.deepEqual(body.options, { num_ctx: 32768 });
  });

  await t.step("reasoning_effort and Anthropic thinking become think; levels only for gpt-oss", () => {
    const think = (request: Partial<ChatRequest>, model = "qwen3:8b") =>
      toOllamaRequest({ messages: [], ...request }, { model, stream: false }).think;
    assert.equal(think({}), undefined);
    assert.equal(think({ reasoning_effort: "high" }), true);
    assert.equal(think({ reasoning_effort: "none" }), false);
    assert.equal(think({ reasoning_effort: "high" }, "gpt-oss:20b"), "high");
    assert.equal(think({ reasoning_effort: "minimal" }, "gpt-oss:20b"), "low");
    assert.equal(think({ thinking: { type: "enabled", budget_tokens: 2048 } }), true);
    assert.equal(think({ thinking: { type: "disabled" } }), false);
  });

  await t.step("what Ollama cannot honour is refused by name, and a cloud candidate may take it", () => {
    const refused = (request: Partial<ChatRequest>) => {
      try {
        toOllamaRequest({ messages: [], tools: [WEATHER_TOOL], ...request }, { model: "m", stream: false });
      } catch (error) {
        assert.ok(error instanceof UpstreamError);
        assert.equal(error.code, "UNSUPPORTED_FIELD");
        assert.equal(error.status, 400);
        assert.equal(error.fallback, true);
        return error.param;
      }
      return null;
    };
    const TIME_TOOL = { ...WEATHER_TOOL, function: { ...WEATHER_TOOL.function, name: "get_time" } };
    assert.equal(refused({ tools: [WEATHER_TOOL, TIME_TOOL], tool_choice: "required" }), "tool_choice");
    assert.equal(
      refused({
        tool_choice: { type: "function", function: { name: "get_weather" } },
        response_format: { type: "json_object" },
      }),
      "tool_choice",
    );
    assert.equal(refused({ tool_choice: "required" }), null, "one tool required is that tool forced");
    assert.equal(refused({ tool_choice: { type: "function", function: { name: "get_weather" } } }), null);
    assert.equal(refused({ parallel_tool_calls: false }), "parallel_tool_calls");
    assert.equal(refused({ logprobs: true }), "logprobs");
    assert.equal(refused({ tool_choice: "auto", parallel_tool_calls: true }), null);
    assert.equal(refused({ tool_choice: "none", parallel_tool_calls: false }), null);
  });
});

Deno.test("ollama adapter against the fake", async (t) => {
  const fake = startFakeOllama();
  const adapter = new OllamaAdapter({ baseUrl: fake.url });
  try {
    await t.step(
      "a complete answer has content, usage and finish_reason stop, and is deterministic",
      async () => {
        const first = await adapter.complete(HELLO, callOptions());
        const second = await adapter.complete(HELLO, callOptions());
        assert.equal(first.finish_reason, "stop");
        assert.match(first.content ?? "", /^The local model answers [0-9a-f]{8} from the café\.$/);
        assert.equal(first.content, second.content);
        assert.deepEqual(first.tool_calls, []);
        assert.equal(first.model, "qwen3:8b");
        assert.equal(first.model_digest, undefined);
        assert.equal(first.usage.total_tokens, first.usage.prompt_tokens + first.usage.completion_tokens);
        assert.ok(first.usage.completion_tokens > 0);
        const sent = fake.requests.at(-1) as Record<string, unknown>;
        assert.equal(sent.stream, false);
        assert.deepEqual(sent.options, { temperature: 0, seed: 42 });
      },
    );

    await t.step("a different seed gives a different answer", async () => {
      const a = await adapter.complete(HELLO, callOptions());
      const b = await adapter.complete({ ...HELLO, seed: 7 }, callOptions());
      assert.notEqual(a.content, b.content);
    });

    await t.step("a tool call comes back with string arguments and a fresh id each time", async () => {
      const request: ChatRequest = {
        messages: [{ role: "user", content: "weather in Paris?" }],
        tools: [WEATHER_TOOL],
      };
      const a = await adapter.complete(request, callOptions());
      const b = await adapter.complete(request, callOptions());
      assert.equal(a.finish_reason, "tool_calls");
      assert.equal(a.content, null);
      assert.equal(a.tool_calls.length, 1);
      assert.equal(a.tool_calls[0].function.name, "get_weather");
      assert.deepEqual(JSON.parse(a.tool_calls[0].function.arguments), { city: "Paris" });
      assert.match(a.tool_calls[0].id, /^call_[0-9a-f]{24}$/);
      // The same call in two turns must not share an id: a fallback would forward duplicates upstream.
      assert.notEqual(a.tool_calls[0].id, b.tool_calls[0].id);
    });

    await t.step("a tool result round-trips to the fake, which accepts it", async () => {
      const result = await adapter.complete({
        messages: [
          { role: "user", content: "weather?" },
          {
            role: "assistant",
            content: null,
            tool_calls: [{
              id: "x1",
              type: "function",
              function: { name: "get_weather", arguments: '{"city":"Paris"}' },
            }],
          },
          { role: "tool", tool_call_id: "x1", content: '{"temp":21}' },
        ],
        tools: [WEATHER_TOOL],
      }, callOptions());
      assert.equal(result.finish_reason, "stop");
      const sent = fake.requests.at(-1) as { messages: Record<string, unknown>[] };
      assert.equal(sent.messages[2].tool_name, "get_weather");
    });

    await t.step("an image reaches the fake as bare base64", async () => {
      const result = await adapter.complete({
        messages: [{
          role: "user",
          content: [{ type: "text", text: "see" }, {
            type: "image_url",
            image_url: { url: "data:image/png;base64,AAAA" },
          }],
        }],
      }, callOptions());
      assert.equal(result.finish_reason, "stop");
    });

    await t.step("a small token limit ends with finish_reason length", async () => {
      const result = await adapter.complete({ ...HELLO, max_tokens: 2 }, callOptions());
      assert.equal(result.finish_reason, "length");
      assert.equal(result.content, "The local");
    });

    await t.step("a stream yields text pieces then exactly one finish with usage", async () => {
      const whole = await adapter.complete(HELLO, callOptions());
      const events = await readAll(await adapter.stream(HELLO, callOptions()));
      assert.equal((fake.requests.at(-1) as Record<string, unknown>).stream, true);
      const text = events.filter((e) => e.type === "text").map((e) => e.type === "text" ? e.text : "").join(
        "",
      );
      assert.equal(text, whole.content);
      const finishes = events.filter((e) => e.type === "finish");
      assert.equal(finishes.length, 1);
      assert.deepEqual(events.at(-1), { type: "finish", finish_reason: "stop", usage: whole.usage });
    });

    await t.step("a streamed tool call arrives whole as start plus one args event", async () => {
      const events = await readAll(
        await adapter.stream(
          { messages: [{ role: "user", content: "weather?" }], tools: [WEATHER_TOOL] },
          callOptions(),
        ),
      );
      assert.equal(events.length, 3);
      assert.equal(events[0].type, "tool_call_start");
      if (events[0].type === "tool_call_start") {
        assert.equal(events[0].index, 0);
        assert.equal(events[0].name, "get_weather");
        assert.match(events[0].id, /^call_[0-9a-f]{24}$/);
      }
      assert.deepEqual(events[1], { type: "tool_call_args", index: 0, fragment: '{"city":"Paris"}' });
      assert.equal(events[2].type, "finish");
      if (events[2].type === "finish") assert.equal(events[2].finish_reason, "tool_calls");
    });

    await t.step("an unknown model is a 404 the client sees, not a fallback", async () => {
      const error = await rejectsWith(
        adapter.complete(HELLO, callOptions({ model: "nope:1b" })),
        "UPSTREAM_NOT_FOUND",
      );
      assert.equal(error.status, 404);
      assert.equal(error.fallback, false);
      assert.match(error.message, /model "nope:1b" not found/);
    });

    await t.step("a busy ollama is a fallback-worthy 503", async () => {
      fake.mode = "busy";
      const error = await rejectsWith(adapter.complete(HELLO, callOptions()), "UPSTREAM_BUSY");
      assert.equal(error.status, 503);
      assert.equal(error.fallback, true);
      await rejectsWith(adapter.stream(HELLO, callOptions()), "UPSTREAM_BUSY");
    });

    await t.step("a crashed runner (500) is a fallback-worthy 502", async () => {
      fake.mode = "error500";
      const error = await rejectsWith(adapter.complete(HELLO, callOptions()), "UPSTREAM_UNAVAILABLE");
      assert.equal(error.status, 502);
      assert.equal(error.fallback, true);
      assert.equal(error.upstreamStatus, 500);
    });

    await t.step("a hanging ollama times out at first byte and the fake sees the abort", async () => {
      fake.mode = "hang";
      const before = fake.aborted;
      const error = await rejectsWith(
        adapter.complete(HELLO, callOptions({ firstByteTimeoutMs: 200 })),
        "UPSTREAM_TIMEOUT",
      );
      assert.equal(error.status, 504);
      assert.equal(error.fallback, true);
      await fake.waitForAborted(before + 1);
      await rejectsWith(adapter.stream(HELLO, callOptions({ firstByteTimeoutMs: 200 })), "UPSTREAM_TIMEOUT");
      await fake.waitForAborted(before + 2);
    });

    await t.step("a cut stream errors and never finishes", async () => {
      fake.mode = "cut_stream";
      const events: StreamEvent[] = [];
      const stream = await adapter.stream(HELLO, callOptions());
      const error = await rejectsWith(
        (async () => {
          for await (const e of stream) events.push(e);
        })(),
        "UPSTREAM_STREAM_CUT",
      );
      assert.equal(error.status, 502);
      assert.equal(error.fallback, false);
      assert.ok(events.length > 0);
      assert.ok(events.every((e) => e.type !== "finish"));
    });

    await t.step("an error line mid-stream errors the stream and never finishes", async () => {
      fake.mode = "midstream_error";
      const events: StreamEvent[] = [];
      const stream = await adapter.stream(HELLO, callOptions());
      const error = await rejectsWith(
        (async () => {
          for await (const e of stream) events.push(e);
        })(),
        "UPSTREAM_STREAM_ERROR",
      );
      assert.equal(error.fallback, false);
      assert.match(error.message, /unexpected EOF/);
      assert.ok(events.every((e) => e.type !== "finish"));
    });

    await t.step("the caller's abort reaches ollama and is reported as CLIENT_ABORTED", async () => {
      fake.mode = "normal";
      const hold = fake.hold();
      const controller = new AbortController();
      const before = fake.aborted;
      const requests = fake.requests.length;
      const pending = adapter.stream(HELLO, callOptions({ signal: controller.signal }));
      await fake.waitForInFlight("qwen3:8b", 1);
      assert.equal(fake.requests.length, requests + 1);
      controller.abort();
      const error = await rejectsWith(pending, "CLIENT_ABORTED");
      assert.equal(error.status, 499);
      assert.equal(error.fallback, false);
      await fake.waitForAborted(before + 1);
      hold.release();
    });

    await t.step("an abort mid-stream errors the stream with CLIENT_ABORTED", async () => {
      const controller = new AbortController();
      const stream = await adapter.stream(HELLO, callOptions({ signal: controller.signal }));
      const reader = stream.getReader();
      const first = await reader.read();
      assert.equal(first.value?.type, "text");
      controller.abort();
      await rejectsWith(
        (async () => {
          while (!(await reader.read()).done) {
            // Events already buffered may still arrive before the abort does.
          }
        })(),
        "CLIENT_ABORTED",
      );
    });

    await t.step("a stopped ollama is a connect failure, and it answers again after restart", async () => {
      await fake.stop();
      const error = await rejectsWith(adapter.complete(HELLO, callOptions()), "UPSTREAM_CONNECT_FAILED");
      assert.equal(error.status, 502);
      assert.equal(error.fallback, true);
      fake.restart();
      const result = await adapter.complete(HELLO, callOptions());
      assert.equal(result.finish_reason, "stop");
    });
  } finally {
    await fake.close();
  }
});
