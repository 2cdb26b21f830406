/**
 * `deno task serve` end to end, as a user of the official OpenAI SDK sees it, against the fake upstreams:
 * local answers, streams, tool calls, fallbacks, fail-closed refusals, bad input and broken streams.
 */
import assert from "node:assert/strict";
import { APIError } from "openai";
import { policyWith, startServeHealthy } from "../e2e/serve_harness.ts";

const userTurn = (text: string) => [{ role: "user" as const, content: text }];

const serve = startServeHealthy;

Deno.test("a local answer through the OpenAI SDK", async (t) => {
  const h = await serve();
  try {
    await t.step(
      "non-stream answers from the local router model with an x-request-id that names its EDR",
      async () => {
        const { data, response } = await h.client.chat.completions
          .create({ model: "auto", messages: userTurn("hello"), seed: 7, temperature: 0 })
          .withResponse();
        assert.equal(data.object, "chat.completion");
        assert.equal(data.model, "qwen3:8b");
        assert.equal(data.choices[0].finish_reason, "stop");
        assert.ok((data.choices[0].message.content ?? "").length > 0);
        assert.ok(data.usage && data.usage.total_tokens > 0);
        const requestId = response.headers.get("x-request-id")!;
        const record = await h.record(requestId);
        assert.equal(record.decision.provider, "local");
        assert.equal(record.decision.path, "primary");
        assert.equal(record.failure, null);
        assert.equal(record.environment.seed, 7);
        assert.ok(record.environment.model_digest, "the local model digest is recorded for replay");
        assert.ok(record.output_hash);
        const sent = h.ollama.requests.at(-1) as Record<string, unknown>;
        assert.equal(sent.stream, false);
        assert.deepEqual((sent.options as Record<string, unknown>).seed, 7);
      },
    );

    await t.step(
      "stream with include_usage delivers content, a finish chunk and the usage chunk",
      async () => {
        const stream = await h.client.chat.completions.create({
          model: "auto",
          messages: userTurn("stream please"),
          stream: true,
          stream_options: { include_usage: true },
        });
        let text = "";
        let finish: string | null = null;
        let usage = 0;
        for await (const chunk of stream) {
          if (chunk.usage) usage = chunk.usage.total_tokens;
          for (const choice of chunk.choices) {
            text += choice.delta.content ?? "";
            finish = choice.finish_reason ?? finish;
          }
        }
        assert.ok(text.length > 0);
        assert.equal(finish, "stop");
        assert.ok(usage > 0);
        const records = await h.records();
        const streamed = records.filter((r) => r.stream);
        assert.equal(streamed.length, 1);
        assert.equal(streamed[0].usage?.total_tokens, usage);
      },
    );

    await t.step("tool calls come back as OpenAI tool_calls with JSON-string arguments", async () => {
      const completion = await h.client.chat.completions.create({
        model: "auto",
        messages: userTurn("what is the weather in Paris?"),
        tools: [{
          type: "function",
          function: {
            name: "get_weather",
            parameters: { type: "object", properties: { city: { type: "string" } } },
          },
        }],
      });
      const choice = completion.choices[0];
      assert.equal(choice.finish_reason, "tool_calls");
      const call = choice.message.tool_calls![0];
      assert.equal(call.type, "function");
      assert.equal(call.function.name, "get_weather");
      assert.equal(typeof JSON.parse(call.function.arguments), "object");
      assert.ok(call.id.length > 0);
    });

    await t.step(
      "GET /v1/models lists the installed local models and the configured cloud models",
      async () => {
        const models = await h.client.models.list();
        const ids = models.data.map((m) => m.id);
        assert.ok(ids.includes("qwen3:8b"));
        assert.ok(ids.includes("claude-sonnet-4-5"));
        assert.ok(ids.includes("gpt-4o-mini"));
      },
    );

    await t.step("healthz and readyz answer with request ids", async () => {
      const live = await fetch(`${h.url}/healthz`);
      assert.equal(live.status, 200);
      assert.ok(live.headers.get("x-request-id"));
      await live.body?.cancel();
      const ready = await fetch(`${h.url}/readyz`);
      const body = await ready.json();
      assert.equal(ready.status, 200);
      assert.equal(body.ready, true);
      assert.equal(body.local.state, "fit");
      assert.equal(body.slot.busy, false);
    });
  } finally {
    await h.close();
  }
});

Deno.test("fallback to the cloud before the first byte", async (t) => {
  // Probing often lets the step that stops Ollama see the health gate close without the default 2 s wait.
  const h = await serve({
    policy: policyWith({ limits: { first_byte_timeout_ms: 300 }, health: { probe_interval_ms: 100 } }),
  });
  try {
    await t.step("local 500 falls back to Anthropic and the EDR keeps both attempts", async () => {
      h.ollama.mode = "error500";
      const { data, response } = await h.client.chat.completions
        .create({ model: "auto", messages: userTurn("fallback on 500") })
        .withResponse();
      assert.equal(data.model, "claude-sonnet-4-5");
      const record = await h.record(response.headers.get("x-request-id")!);
      assert.equal(record.decision.path, "fallback");
      assert.deepEqual(record.attempts.map((a) => [a.provider, a.outcome]), [["local", "fallback"], [
        "anthropic",
        "ok",
      ]]);
      assert.equal(record.attempts[0].status, 500);
    });

    await t.step("local timeout falls back within the first-byte timeout", async () => {
      h.ollama.mode = "hang";
      const data = await h.client.chat.completions.create({
        model: "auto",
        messages: userTurn("fallback on hang"),
      });
      assert.equal(data.model, "claude-sonnet-4-5");
      await h.ollama.waitForAborted(1);
    });

    await t.step("Anthropic 429 falls back to OpenAI, streamed", async () => {
      h.ollama.mode = "error500";
      h.anthropic.mode = "rate_limit";
      const stream = await h.client.chat.completions.create({
        model: "auto",
        messages: userTurn("two fallbacks"),
        stream: true,
      });
      let model = "";
      for await (const chunk of stream) model = chunk.model;
      assert.equal(model, "gpt-4o-mini");
    });

    await t.step("Ollama down: the health gate sends requests straight to the cloud", async () => {
      h.ollama.mode = "normal";
      h.anthropic.mode = "normal";
      await h.ollama.stop();
      await h.waitForOutput(/local health unfit/);
      const before = h.ollama.requests.length;
      const { response } = await h.client.chat.completions
        .create({ model: "auto", messages: userTurn("local is down") })
        .withResponse();
      const record = await h.record(response.headers.get("x-request-id")!);
      assert.equal(record.decision.provider, "anthropic");
      assert.ok(record.decision_factors.includes("LOCAL_UNFIT"));
      assert.equal(record.attempts.length, 1, "no time is spent on the unfit local host");
      assert.equal(h.ollama.requests.length, before);
    });

    await t.step("SENSITIVE fails closed with 503 when local is down, and says not to retry", async () => {
      const response = await fetch(`${h.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({
          model: "auto",
          messages: userTurn("sensitive"),
          routing_contract: { classification: "SENSITIVE" },
        }),
      });
      const body = await response.json();
      assert.equal(response.status, 503);
      assert.equal(body.error.code, "LOCAL_UNAVAILABLE_FOR_SENSITIVE");
      assert.equal(response.headers.get("x-should-retry"), "false");
      const record = await h.record(response.headers.get("x-request-id")!);
      assert.equal(record.failure?.type, "policy_rejection");
      assert.deepEqual(record.attempts, []);
      assert.equal(h.anthropic.requests.filter((r) => JSON.stringify(r).includes("sensitive")).length, 0);
      h.ollama.restart();
    });
  } finally {
    await h.close();
  }
});

Deno.test("bad input gets a clear 400 and an EDR", async (t) => {
  const h = await serve();
  const post = (body: string, headers: Record<string, string> = {}) =>
    fetch(`${h.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json", ...headers },
      body,
    });
  try {
    await t.step("malformed JSON", async () => {
      const response = await post("{not json");
      const body = await response.json();
      assert.equal(response.status, 400);
      assert.equal(body.error.type, "invalid_request_error");
      assert.equal(body.error.code, "INVALID_JSON");
      const record = await h.record(response.headers.get("x-request-id")!);
      assert.equal(record.failure?.type, "validation_error");
      assert.equal(record.replay.replayable, false);
    });

    await t.step("an unknown routing_contract field is named", async () => {
      const response = await post(JSON.stringify({
        model: "auto",
        messages: userTurn("x"),
        routing_contract: { classification: "PUBLIC", colour: "blue" },
      }));
      const body = await response.json();
      assert.equal(response.status, 400);
      assert.equal(body.error.code, "INVALID_ROUTING_CONTRACT");
      assert.match(body.error.message, /colour/);
    });

    await t.step("a bad contract value in the header is named", async () => {
      const response = await post(JSON.stringify({ model: "auto", messages: userTurn("x") }), {
        "x-routing-contract": JSON.stringify({ classification: "TOP" }),
      });
      const body = await response.json();
      assert.equal(response.status, 400);
      assert.equal(body.error.param, "routing_contract.classification");
    });

    await t.step("empty messages names the field", async () => {
      const response = await post(JSON.stringify({ model: "auto", messages: [] }));
      const body = await response.json();
      assert.equal(response.status, 400);
      assert.equal(body.error.param, "messages");
    });

    await t.step("an unknown model is a 404 model error", async () => {
      const error = await h.client.chat.completions
        .create({ model: "no-such-model", messages: userTurn("x") })
        .catch((e) => e);
      assert.ok(error instanceof APIError);
      assert.equal(error.status, 404);
      assert.equal(error.code, "MODEL_NOT_FOUND");
    });
  } finally {
    await h.close();
  }
});

Deno.test("broken streams end as errors, never as a clean finish", async (t) => {
  const h = await serve({ only: "openai" });
  try {
    for (const mode of ["cut_stream", "midstream_error"] as const) {
      await t.step(`local ${mode} after content reaches the client as an SDK error`, async () => {
        h.ollama.mode = mode;
        const stream = await h.client.chat.completions.create({
          model: "auto",
          messages: userTurn(`stream ${mode}`),
          stream: true,
        });
        let finish: string | null = null;
        const error = await (async () => {
          for await (const chunk of stream) finish = chunk.choices[0]?.finish_reason ?? finish;
        })().then(() => null, (e) => e);
        assert.ok(error, "the SDK raised");
        assert.equal(finish, null, "no finish_reason was sent");
        const records = await h.records();
        const last = records.at(-1)!;
        assert.equal(last.failure?.stage, "stream");
        assert.ok(["upstream_stream_cut", "provider_error"].includes(last.failure!.type));
      });
    }
  } finally {
    h.ollama.mode = "normal";
    await h.close();
  }
});

Deno.test("a client that disconnects aborts the upstream request at once", async () => {
  const h = await serve({ noCloudKeys: true });
  try {
    h.ollama.mode = "hang";
    const controller = new AbortController();
    const pending = fetch(`${h.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "auto", messages: userTurn("hang"), stream: true }),
      signal: controller.signal,
    }).catch((e) => e);
    await h.ollama.waitForRequests(1);
    controller.abort();
    await pending;
    await h.ollama.waitForAborted(1);
    await waitUntil(async () => (await h.records()).length === 1);
    const [record] = await h.records();
    assert.equal(record.failure?.type, "client_disconnect");
    assert.equal(record.attempts[0].outcome, "aborted");
  } finally {
    h.ollama.mode = "normal";
    await h.close();
  }
});

/** Polls an async condition on each turn of the event loop until it holds (bounded). */
async function waitUntil(condition: () => Promise<boolean>, attempts = 2000): Promise<void> {
  for (let i = 0; i < attempts; i++) {
    if (await condition()) return;
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
  throw new Error("condition did not hold");
}
