import assert from "node:assert/strict";
import { OpenAIAdapter, toOpenAIRequest } from "../../../lib/providers/openai/mod.ts";
import type { ChatRequest, StreamEvent } from "../../../lib/canonical/mod.ts";
import { FAKE_REFUSAL, FAKE_USAGE_DETAILS, startFakeOpenAI } from "../../fakes/fake_openai.ts";
import { callOptionsFor, rejectsWith } from "../call_helpers.ts";

const callOptions = callOptionsFor("gpt-4o-mini");

const HELLO: ChatRequest = {
  model: "auto",
  messages: [{ role: "system", content: "be brief" }, { role: "user", content: "say hello" }],
  seed: 42,
  temperature: 0,
  stream_options: { include_usage: false },
};

const WEATHER: ChatRequest = {
  messages: [{ role: "user", content: "weather in Paris?" }],
  tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
};

async function drainStream(stream: ReadableStream<StreamEvent>, into: StreamEvent[]): Promise<void> {
  for await (const event of stream) into.push(event);
}

function textOf(events: StreamEvent[]): string {
  return events.map((e) => e.type === "text" ? e.text : "").join("");
}

Deno.test("openai adapter: request shape", async (t) => {
  await t.step(
    "the model comes from the call, stream is explicit, stream_options only when streaming",
    () => {
      const complete = toOpenAIRequest(HELLO, { model: "gpt-4o-mini", stream: false });
      assert.equal(complete.model, "gpt-4o-mini");
      assert.equal(complete.stream, false);
      assert.equal("stream_options" in complete, false);
      assert.deepEqual(complete.messages, HELLO.messages);
      const streamed = toOpenAIRequest(HELLO, { model: "gpt-4o", stream: true });
      assert.deepEqual(streamed.stream_options, { include_usage: true });
      assert.equal(streamed.seed, 42);
    },
  );
});

Deno.test("openai adapter: a 200 whose body is an error is a fallback-worthy failure", async () => {
  const fetchError = () =>
    Promise.resolve(
      Response.json({ error: { message: "upstream broke", type: "server_error", param: null, code: null } }),
    );
  const adapter = new OpenAIAdapter({ baseUrl: "http://127.0.0.1:9/v1", apiKey: "sk-x", fetch: fetchError });
  const error = await rejectsWith(adapter.complete(HELLO, callOptions()), "UPSTREAM_UNAVAILABLE");
  assert.equal(error.fallback, true);
  assert.match(error.message, /upstream broke/);
});

Deno.test("openai adapter against the fake", async (t) => {
  const fake = startFakeOpenAI();
  const adapter = new OpenAIAdapter({ baseUrl: fake.url, apiKey: fake.apiKey });
  try {
    await t.step("a complete answer keeps non-ASCII text, usage and the upstream id", async () => {
      const result = await adapter.complete(HELLO, callOptions());
      assert.match(result.content ?? "", /^Bonjour 🙂 voilà la réponse [0-9a-f]{8}, très bien\.$/);
      assert.equal(result.finish_reason, "stop");
      assert.deepEqual(result.tool_calls, []);
      assert.match(result.upstream_id ?? "", /^chatcmpl-/);
      assert.equal(result.usage.total_tokens, result.usage.prompt_tokens + result.usage.completion_tokens);
      const sent = fake.requests.at(-1) as Record<string, unknown>;
      assert.equal(sent.model, "gpt-4o-mini");
      assert.equal(sent.stream, false);
    });

    await t.step("a complete tool call keeps its id and string arguments", async () => {
      const result = await adapter.complete(WEATHER, callOptions());
      assert.equal(result.finish_reason, "tool_calls");
      assert.equal(result.content, null);
      assert.equal(result.tool_calls.length, 1);
      assert.match(result.tool_calls[0].id, /^call_/);
      assert.equal(result.tool_calls[0].function.name, "get_weather");
      assert.deepEqual(JSON.parse(result.tool_calls[0].function.arguments), { city: "Paris" });
    });

    await t.step("a small token limit ends with finish_reason length", async () => {
      const result = await adapter.complete({ ...HELLO, max_completion_tokens: 2 }, callOptions());
      assert.equal(result.finish_reason, "length");
    });

    await t.step(
      "a stream torn mid-character yields the same text and one finish carrying usage",
      async () => {
        const whole = await adapter.complete(HELLO, callOptions());
        const events: StreamEvent[] = [];
        await drainStream(await adapter.stream(HELLO, callOptions()), events);
        const sent = fake.requests.at(-1) as Record<string, unknown>;
        assert.deepEqual(sent.stream_options, { include_usage: true });
        assert.equal(textOf(events), whole.content);
        assert.equal(events.filter((e) => e.type === "finish").length, 1);
        assert.deepEqual(events.at(-1), { type: "finish", finish_reason: "stop", usage: whole.usage });
      },
    );

    await t.step(
      "a refusal comes back as refusal text, in a complete answer and as stream events",
      async () => {
        fake.mode = "refusal";
        try {
          const result = await adapter.complete(HELLO, callOptions());
          assert.equal(result.refusal, FAKE_REFUSAL);
          assert.equal(result.content, null);
          const events: StreamEvent[] = [];
          await drainStream(await adapter.stream(HELLO, callOptions()), events);
          const refusal = events.map((e) => e.type === "refusal" ? e.text : "").join("");
          assert.equal(refusal, FAKE_REFUSAL);
        } finally {
          fake.mode = "normal";
        }
      },
    );

    await t.step("cached and reasoning token counts come back as usage details", async () => {
      fake.mode = "usage_details";
      try {
        const result = await adapter.complete(HELLO, callOptions());
        assert.deepEqual(result.usage_details, FAKE_USAGE_DETAILS);
        // The three recorded counts stay exactly three.
        assert.deepEqual(Object.keys(result.usage), ["prompt_tokens", "completion_tokens", "total_tokens"]);
        const events: StreamEvent[] = [];
        await drainStream(await adapter.stream(HELLO, callOptions()), events);
        const finish = events.at(-1);
        assert.ok(finish?.type === "finish");
        assert.deepEqual(finish.usage_details, FAKE_USAGE_DETAILS);
      } finally {
        fake.mode = "normal";
      }
    });

    await t.step(
      "logprobs asked for are sent and come back on the answer and on each text event",
      async () => {
        const request: ChatRequest = { ...HELLO, logprobs: true, top_logprobs: 3 };
        const result = await adapter.complete(request, callOptions());
        const sent = fake.requests.at(-1) as Record<string, unknown>;
        assert.equal(sent.logprobs, true);
        assert.equal(sent.top_logprobs, 3);
        const tokens = result.logprobs?.content as { token: string; logprob: number }[];
        assert.equal(tokens.map((t) => t.token).join(""), result.content);
        const events: StreamEvent[] = [];
        await drainStream(await adapter.stream(request, callOptions()), events);
        for (const event of events) {
          if (event.type !== "text") continue;
          const [token] = event.logprobs?.content as { token: string }[];
          assert.equal(token.token, event.text);
        }
      },
    );

    await t.step("without logprobs asked, none are reported", async () => {
      const result = await adapter.complete(HELLO, callOptions());
      assert.equal(result.logprobs, undefined);
      assert.equal(result.refusal, undefined);
      assert.equal(result.usage_details, undefined);
    });

    await t.step("a streamed tool call keeps its index: start with id and name, then fragments", async () => {
      const events: StreamEvent[] = [];
      await drainStream(await adapter.stream(WEATHER, callOptions()), events);
      const start = events.find((e) => e.type === "tool_call_start");
      assert.ok(start && start.type === "tool_call_start");
      assert.equal(start.index, 0);
      assert.equal(start.name, "get_weather");
      assert.match(start.id, /^call_/);
      const args = events.filter((e) => e.type === "tool_call_args");
      assert.ok(args.length > 1);
      assert.deepEqual(JSON.parse(args.map((e) => e.type === "tool_call_args" ? e.fragment : "").join("")), {
        city: "Paris",
      });
      const finish = events.at(-1);
      assert.ok(finish?.type === "finish");
      assert.equal(finish.finish_reason, "tool_calls");
      assert.ok(finish.usage && finish.usage.completion_tokens > 0);
    });

    await t.step("a wrong key is our fault: a fallback-worthy 502 that never echoes the key", async () => {
      const wrong = new OpenAIAdapter({ baseUrl: fake.url, apiKey: "sk-wrong-secret-key-123" });
      const error = await rejectsWith(wrong.complete(HELLO, callOptions()), "UPSTREAM_AUTH_FAILED");
      assert.equal(error.status, 502);
      assert.equal(error.fallback, true);
      assert.equal(error.upstreamStatus, 401);
      assert.doesNotMatch(error.message, /sk-|123/);
      fake.mode = "auth_fail";
      await rejectsWith(adapter.stream(HELLO, callOptions()), "UPSTREAM_AUTH_FAILED");
      fake.mode = "normal";
    });

    await t.step("a bad request stays a 400 with the upstream's message and param", async () => {
      const error = await rejectsWith(
        adapter.complete({ messages: [] }, callOptions()),
        "UPSTREAM_INVALID_REQUEST",
      );
      assert.equal(error.status, 400);
      assert.equal(error.fallback, false);
      assert.equal(error.param, "messages");
      assert.match(error.message, /empty array/);
    });

    await t.step("an unknown model stays a 404", async () => {
      const error = await rejectsWith(
        adapter.complete(HELLO, callOptions({ model: "gpt-9" })),
        "UPSTREAM_NOT_FOUND",
      );
      assert.equal(error.status, 404);
      assert.equal(error.fallback, false);
    });

    await t.step("a rate limit is a fallback-worthy 429 that keeps retry-after", async () => {
      fake.mode = "rate_limit";
      const error = await rejectsWith(adapter.complete(HELLO, callOptions()), "UPSTREAM_RATE_LIMITED");
      assert.equal(error.status, 429);
      assert.equal(error.fallback, true);
      assert.equal(error.retryAfter, 7);
    });

    await t.step("exhausted quota is fallback-worthy, not a rate limit", async () => {
      fake.mode = "quota";
      const error = await rejectsWith(adapter.complete(HELLO, callOptions()), "UPSTREAM_QUOTA_EXHAUSTED");
      assert.equal(error.fallback, true);
      assert.equal(error.upstreamStatus, 429);
    });

    await t.step("503 and 500 are fallback-worthy unavailability", async () => {
      fake.mode = "busy";
      const busy = await rejectsWith(adapter.complete(HELLO, callOptions()), "UPSTREAM_UNAVAILABLE");
      assert.equal(busy.status, 503);
      assert.equal(busy.fallback, true);
      fake.mode = "error500";
      const crashed = await rejectsWith(adapter.stream(HELLO, callOptions()), "UPSTREAM_UNAVAILABLE");
      assert.equal(crashed.status, 502);
      assert.equal(crashed.fallback, true);
    });

    await t.step("a hanging upstream times out at first byte and the fake sees the abort", async () => {
      fake.mode = "hang";
      const before = fake.aborted;
      const error = await rejectsWith(
        adapter.stream(HELLO, callOptions({ firstByteTimeoutMs: 200 })),
        "UPSTREAM_TIMEOUT",
      );
      assert.equal(error.status, 504);
      assert.equal(error.fallback, true);
      await fake.waitForAborted(before + 1);
    });

    await t.step("the total timeout applies too", async () => {
      fake.mode = "hang";
      const before = fake.aborted;
      const error = await rejectsWith(
        adapter.complete(HELLO, callOptions({ totalTimeoutMs: 200, firstByteTimeoutMs: 30_000 })),
        "UPSTREAM_TIMEOUT",
      );
      assert.equal(error.fallback, true);
      await fake.waitForAborted(before + 1);
    });

    await t.step("a cut stream errors and never finishes", async () => {
      fake.mode = "cut_stream";
      const events: StreamEvent[] = [];
      const error = await rejectsWith(
        drainStream(await adapter.stream(HELLO, callOptions()), events),
        "UPSTREAM_STREAM_CUT",
      );
      assert.equal(error.fallback, false);
      assert.ok(textOf(events).length > 0);
      assert.ok(events.every((e) => e.type !== "finish"));
    });

    await t.step("a cut non-streamed body is a fallback-worthy bad response", async () => {
      fake.mode = "cut_stream";
      const error = await rejectsWith(adapter.complete(HELLO, callOptions()), "UPSTREAM_BAD_RESPONSE");
      assert.equal(error.fallback, true);
    });

    await t.step("an error event mid-stream errors the stream and never finishes", async () => {
      fake.mode = "midstream_error";
      const events: StreamEvent[] = [];
      const error = await rejectsWith(
        drainStream(await adapter.stream(HELLO, callOptions()), events),
        "UPSTREAM_STREAM_ERROR",
      );
      assert.equal(error.status, 502);
      assert.equal(error.fallback, false);
      assert.match(error.message, /error while processing/);
      assert.ok(events.every((e) => e.type !== "finish"));
    });

    await t.step("the caller's abort reaches the upstream and is reported as CLIENT_ABORTED", async () => {
      fake.mode = "normal";
      const hold = fake.hold();
      const before = fake.aborted;
      const controller = new AbortController();
      const pending = adapter.complete(HELLO, callOptions({ signal: controller.signal }));
      await fake.waitForInFlight("gpt-4o-mini", 1);
      controller.abort();
      const error = await rejectsWith(pending, "CLIENT_ABORTED");
      assert.equal(error.status, 499);
      assert.equal(error.fallback, false);
      await fake.waitForAborted(before + 1);
      hold.release();
    });

    await t.step("an already aborted call never reaches the upstream", async () => {
      const requests = fake.requests.length;
      await rejectsWith(
        adapter.complete(HELLO, callOptions({ signal: AbortSignal.abort() })),
        "CLIENT_ABORTED",
      );
      assert.equal(fake.requests.length, requests);
    });
  } finally {
    await fake.close();
  }

  await t.step("a closed port is a fallback-worthy connect failure", async () => {
    const error = await rejectsWith(adapter.complete(HELLO, callOptions()), "UPSTREAM_CONNECT_FAILED");
    assert.equal(error.status, 502);
    assert.equal(error.fallback, true);
  });
});
