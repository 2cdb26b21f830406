/**
 * Anthropic translation end to end, through `deno task serve` as users run it: the official OpenAI SDK served by the fake
 * Anthropic (system folding, turn merging, tool round trips, streams, bad tool arguments, 529 fallback,
 * mid-stream errors, temperature refused by name), and the official Anthropic SDK on `/v1/messages` served by
 * the fake Ollama (answers, tools, streams, Anthropic-shaped errors, the x-routing-contract header).
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { APIError } from "openai";
import type { ChatCompletionMessageParam, ChatCompletionTool } from "openai/resources/chat/completions";
import { policyWith, type ServedRouter, type ServeOptions, startServe } from "../e2e/serve_harness.ts";

/** Probing every 100 ms lets a test see Ollama stop or come back without the default 2 s wait. */
const QUICK_PROBES = policyWith({ health: { probe_interval_ms: 100 } });

/** Starts `deno task serve` and waits until it has seen local health once. */
async function serve(options: ServeOptions = {}): Promise<ServedRouter> {
  const h = await startServe({ policy: QUICK_PROBES, ...options });
  try {
    await h.waitForOutput(/local health (fit|unfit)/);
  } catch (error) {
    await h.close();
    throw error;
  }
  return h;
}

/** Runs `change` (stopping or restarting Ollama) and waits for the router to report local health `state`. */
async function healthBecomes(h: ServedRouter, state: "fit" | "unfit", change: () => unknown): Promise<void> {
  const seen = (h.output().match(new RegExp(`local health ${state}\\b`, "g")) ?? []).length;
  await change();
  await h.waitForOutput(new RegExp(`(?:[\\s\\S]*?local health ${state}\\b){${seen + 1}}`));
}

type Json = Record<string, unknown>;

const weatherTool: ChatCompletionTool = {
  type: "function",
  function: {
    name: "get_weather",
    description: "Current weather for a city",
    parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  },
};

/** The body of the last request the fake Anthropic received. */
function lastAnthropicBody(h: { anthropic: { requests: { body: unknown }[] } }): Json {
  return h.anthropic.requests.at(-1)!.body as Json;
}

Deno.test("OpenAI SDK clients served by Anthropic", async (t) => {
  const h = await serve({ only: "anthropic" });
  // Local must not serve: with Ollama refusing connections, the health gate sends everything to Anthropic.
  await healthBecomes(h, "unfit", () => h.ollama.stop());
  try {
    await t.step("a plain question gets an OpenAI-shaped answer from Claude", async () => {
      const { data, response } = await h.client.chat.completions
        .create({ model: "auto", messages: [{ role: "user", content: "hello" }] })
        .withResponse();
      assert.equal(data.object, "chat.completion");
      assert.equal(data.model, "claude-sonnet-4-5");
      assert.equal(data.choices[0].finish_reason, "stop");
      assert.match(data.choices[0].message.content ?? "", /Bonjour/);
      assert.ok(data.usage && data.usage.prompt_tokens > 0 && data.usage.completion_tokens > 0);
      const record = await h.record(response.headers.get("x-request-id")!);
      assert.equal(record.endpoint, "/v1/chat/completions");
      assert.equal(record.decision.provider, "anthropic");
      assert.equal(record.failure, null);
      const sent = h.anthropic.requests.at(-1)!;
      assert.equal(sent.headers["x-api-key"], "<correct>");
      assert.ok(sent.headers["anthropic-version"]);
      assert.equal(typeof (sent.body as Json).max_tokens, "number", "max_tokens is always sent");
    });

    await t.step(
      "system and developer messages become top-level system blocks; turns alternate",
      async () => {
        const messages: ChatCompletionMessageParam[] = [
          { role: "system", content: "You are terse." },
          { role: "developer", content: "Answer in French." },
          { role: "user", content: "hello" },
          { role: "assistant", content: "Hi! What can I do?" },
          { role: "user", content: "first question" },
          { role: "user", content: "second question" },
        ];
        const data = await h.client.chat.completions.create({ model: "auto", messages });
        assert.equal(data.choices[0].finish_reason, "stop");
        const body = lastAnthropicBody(h);
        assert.deepEqual(body.system, [
          { type: "text", text: "You are terse." },
          { type: "text", text: "Answer in French." },
        ], "both instructions, in order, one block each");
        const turns = body.messages as { role: string; content: unknown }[];
        assert.ok(
          turns.every((m) => m.role !== "system" && m.role !== "developer"),
          "no system role in messages",
        );
        assert.equal(turns[0].role, "user", "the first turn is the user's");
        for (let i = 1; i < turns.length; i++) {
          assert.notEqual(turns[i].role, turns[i - 1].role, "consecutive same-role turns are merged");
        }
        assert.deepEqual(turns.map((m) => m.role), ["user", "assistant", "user"]);
        assert.deepEqual(turns[1].content, [{ type: "text", text: "Hi! What can I do?" }]);
        const last = turns.at(-1)!.content as { type: string; text: string }[];
        assert.deepEqual(last.map((b) => b.text), ["first question", "second question"]);
      },
    );

    await t.step("a tool-use round trip: tool_calls out, tool result back, final text answer", async () => {
      const question: ChatCompletionMessageParam = { role: "user", content: "what is the weather in Paris?" };
      const first = await h.client.chat.completions.create({
        model: "auto",
        messages: [question],
        tools: [weatherTool],
      });
      const choice = first.choices[0];
      assert.equal(choice.finish_reason, "tool_calls");
      const call = choice.message.tool_calls![0];
      assert.equal(call.type, "function");
      assert.equal(call.function.name, "get_weather");
      assert.equal(typeof call.function.arguments, "string");
      assert.deepEqual(JSON.parse(call.function.arguments), { city: "Paris" });
      const upstreamAnswer = h.anthropic.requests.at(-1)!;
      assert.equal(upstreamAnswer.status, 200);
      assert.match(call.id, /^toolu_fake\d{4}$/, "the id is the upstream tool_use id");

      const second = await h.client.chat.completions.create({
        model: "auto",
        messages: [
          question,
          choice.message,
          { role: "tool", tool_call_id: call.id, content: "18°C and sunny" },
        ],
        tools: [weatherTool],
      });
      assert.equal(second.choices[0].finish_reason, "stop");
      assert.match(second.choices[0].message.content ?? "", /Résultat reçu/);
      const turns = lastAnthropicBody(h).messages as { role: string; content: Json[] }[];
      assert.deepEqual(turns.map((m) => m.role), ["user", "assistant", "user"]);
      const toolUse = turns[1].content.find((b) => b.type === "tool_use")!;
      assert.equal(toolUse.id, call.id);
      assert.equal(toolUse.name, "get_weather");
      assert.deepEqual(toolUse.input, { city: "Paris" }, "arguments are sent as a parsed object");
      const toolResult = turns[2].content[0];
      assert.equal(toolResult.type, "tool_result");
      assert.equal(toolResult.tool_use_id, call.id);
      assert.equal(toolResult.content, "18°C and sunny");
    });

    await t.step(
      "a stream delivers content deltas, a finish chunk and usage, then ends cleanly",
      async () => {
        const stream = await h.client.chat.completions.create({
          model: "auto",
          messages: [{ role: "user", content: "stream please" }],
          stream: true,
          stream_options: { include_usage: true },
        });
        let text = "";
        let deltas = 0;
        let finish: string | null = null;
        let usage: { prompt_tokens: number; completion_tokens: number; total_tokens: number } | null = null;
        let model = "";
        for await (const chunk of stream) {
          model = chunk.model;
          if (chunk.usage) usage = chunk.usage;
          for (const c of chunk.choices) {
            if (c.delta.content) {
              text += c.delta.content;
              deltas++;
            }
            finish = c.finish_reason ?? finish;
          }
        }
        assert.equal(model, "claude-sonnet-4-5");
        assert.ok(deltas > 1, "the answer arrives in several deltas");
        assert.match(
          text,
          /^Bonjour! Voilà une réponse déterministe ✓ — ça marche 🌍\./,
          "multi-byte text intact",
        );
        assert.equal(finish, "stop");
        assert.ok(usage && usage.total_tokens === usage.prompt_tokens + usage.completion_tokens);
        assert.ok(usage.completion_tokens > 0);
        assert.equal(lastAnthropicBody(h).stream, true);
        const record = (await h.records()).at(-1)!;
        assert.equal(record.stream, true);
        assert.equal(record.failure, null);
        assert.equal(record.usage?.total_tokens, usage.total_tokens);
      },
    );

    await t.step("a streamed tool call arrives as OpenAI tool_call deltas that join into JSON", async () => {
      const stream = await h.client.chat.completions.create({
        model: "auto",
        messages: [{ role: "user", content: "weather, streamed" }],
        tools: [weatherTool],
        stream: true,
      });
      let id = "";
      let name = "";
      let args = "";
      let finish: string | null = null;
      for await (const chunk of stream) {
        for (const c of chunk.choices) {
          for (const call of c.delta.tool_calls ?? []) {
            id ||= call.id ?? "";
            name ||= call.function?.name ?? "";
            args += call.function?.arguments ?? "";
          }
          finish = c.finish_reason ?? finish;
        }
      }
      assert.match(id, /^toolu_fake\d{4}$/);
      assert.equal(name, "get_weather");
      assert.deepEqual(JSON.parse(args), { city: "Paris" });
      assert.equal(finish, "tool_calls");
    });

    await t.step(
      "malformed tool-call arguments are a 400 OpenAI error with an EDR, not a crash",
      async () => {
        const before = h.anthropic.requests.length;
        const error = await h.client.chat.completions.create({
          model: "auto",
          messages: [
            { role: "user", content: "weather?" },
            {
              role: "assistant",
              content: null,
              tool_calls: [{
                id: "call_bad",
                type: "function",
                function: { name: "get_weather", arguments: "{city: Paris" },
              }],
            },
            { role: "tool", tool_call_id: "call_bad", content: "sunny" },
          ],
          tools: [weatherTool],
        }).catch((e) => e);
        assert.ok(error instanceof APIError, `expected an APIError, got ${error}`);
        assert.equal(error.status, 400);
        assert.equal(error.type, "invalid_request_error");
        assert.equal(error.code, "INVALID_TOOL_ARGUMENTS");
        assert.match(error.message, /call_bad/);
        assert.equal(h.anthropic.requests.length, before, "nothing was sent upstream");
        const record = await h.record(error.headers!.get("x-request-id")!);
        assert.equal(record.failure?.type, "validation_error");
        assert.equal(record.attempts.at(-1)?.error_code, "INVALID_TOOL_ARGUMENTS");
      },
    );

    await t.step("a mid-stream Anthropic error reaches the OpenAI SDK as a thrown error", async () => {
      h.anthropic.mode = "midstream_error";
      try {
        const stream = await h.client.chat.completions.create({
          model: "auto",
          messages: [{ role: "user", content: "stream then fail" }],
          stream: true,
        });
        let text = "";
        let finish: string | null = null;
        const error = await (async () => {
          for await (const chunk of stream) {
            for (const c of chunk.choices) {
              text += c.delta.content ?? "";
              finish = c.finish_reason ?? finish;
            }
          }
        })().then(() => null, (e) => e);
        assert.ok(error instanceof Error, "the SDK raised");
        assert.ok(text.length > 0, "content arrived before the error");
        assert.equal(finish, null, "no clean finish was sent");
        const record = (await h.records()).at(-1)!;
        assert.equal(record.failure?.stage, "stream");
        assert.equal(record.failure?.type, "provider_error");
        assert.equal(record.attempts.at(-1)?.outcome, "failed");
      } finally {
        h.anthropic.mode = "normal";
      }
    });

    await t.step("temperature 1.8 is refused by name before any call, never clamped", async () => {
      const before = h.anthropic.requests.length;
      // Only Anthropic allowed: with local merely down, decide() would answer the retryable 503 instead.
      const error = await h.client.chat.completions.create({
        model: "auto",
        messages: [{ role: "user", content: "be creative" }],
        temperature: 1.8,
      }, { headers: { "x-routing-contract": JSON.stringify({ provider_allowlist: ["anthropic"] }) } })
        .catch((e) => e);
      assert.ok(error instanceof APIError, `expected APIError, got ${error}`);
      assert.equal(error.status, 400);
      assert.equal(error.code, "UNSUPPORTED_FIELD");
      assert.equal(error.param, "temperature");
      assert.equal(error.headers?.get("x-hi-reason"), "UNSUPPORTED_FIELD");
      assert.equal(h.anthropic.requests.length, before, "nothing was sent to anthropic");
      const record = await h.record(error.headers?.get("x-request-id") ?? "");
      assert.deepEqual(record.attempts, [], "decide() keeps it from anthropic");
      assert.ok(record.constraints_applied.includes("field_unsupported:anthropic:temperature"));
    });
  } finally {
    await h.close();
  }
});

Deno.test("Anthropic 529 overloaded falls back to OpenAI", async () => {
  const h = await serve();
  await healthBecomes(h, "unfit", () => h.ollama.stop());
  try {
    h.anthropic.mode = "overloaded";
    const { data, response } = await h.client.chat.completions
      .create({ model: "auto", messages: [{ role: "user", content: "overloaded?" }] })
      .withResponse();
    assert.equal(data.model, "gpt-4o-mini");
    assert.equal(h.anthropic.requests.at(-1)!.status, 529);
    const record = await h.record(response.headers.get("x-request-id")!);
    assert.equal(record.decision.path, "fallback");
    assert.deepEqual(
      record.attempts.map((a) => [a.provider, a.outcome, a.status, a.error_code]),
      [["anthropic", "fallback", 529, "UPSTREAM_OVERLOADED"], ["openai", "ok", 200, null]],
    );
  } finally {
    await h.close();
  }
});

Deno.test("Anthropic SDK clients on /v1/messages served by the local model", async (t) => {
  const h = await serve();
  const client = new Anthropic({ baseURL: h.url, apiKey: "x", maxRetries: 0 });
  const requestIds: string[] = [];
  const edrFor = async (requestId: string | null) => {
    assert.ok(requestId, "the answer carries x-request-id");
    requestIds.push(requestId);
    const record = await h.record(requestId);
    assert.equal(record.endpoint, "/v1/messages");
    return record;
  };
  try {
    await t.step("messages.create answers in Anthropic's shape, with the system prompt sent on", async () => {
      const { data, response } = await client.messages
        .create({
          model: "auto",
          max_tokens: 128,
          system: "You are a helpful assistant.",
          messages: [{ role: "user", content: "hello" }],
        })
        .withResponse();
      assert.equal(data.type, "message");
      assert.equal(data.role, "assistant");
      assert.equal(data.model, "qwen3:8b");
      assert.match(data.id, /^msg_/);
      assert.equal(data.content[0].type, "text");
      assert.match((data.content[0] as Anthropic.TextBlock).text, /The local model answers/);
      assert.equal(data.stop_reason, "end_turn");
      assert.ok(data.usage.input_tokens > 0 && data.usage.output_tokens > 0);
      const sent = h.ollama.requests.at(-1) as { messages: { role: string; content: string }[] };
      assert.deepEqual(sent.messages[0], { role: "system", content: "You are a helpful assistant." });
      assert.equal(sent.messages[1].role, "user");
      const record = await edrFor(response.headers.get("x-request-id"));
      assert.equal(record.decision.provider, "local");
      assert.equal(record.failure, null);
    });

    await t.step("tools given: a tool_use block with an input object and stop_reason tool_use", async () => {
      const { data, response } = await client.messages
        .create({
          model: "auto",
          max_tokens: 128,
          tools: [{
            name: "get_weather",
            description: "Current weather for a city",
            input_schema: { type: "object", properties: { city: { type: "string" } } },
          }],
          messages: [{ role: "user", content: "weather in Paris?" }],
        })
        .withResponse();
      assert.equal(data.stop_reason, "tool_use");
      const block = data.content.find((b) => b.type === "tool_use") as Anthropic.ToolUseBlock;
      assert.ok(block, "a tool_use block came back");
      assert.equal(block.name, "get_weather");
      assert.deepEqual(block.input, { city: "Paris" });
      assert.ok(block.id.length > 0);
      await edrFor(response.headers.get("x-request-id"));
    });

    await t.step("messages.stream(...).finalMessage() resolves to the whole message", async () => {
      const stream = client.messages.stream({
        model: "auto",
        max_tokens: 128,
        messages: [{ role: "user", content: "stream please" }],
      });
      let deltas = "";
      stream.on("text", (text) => deltas += text);
      const { response } = await stream.withResponse();
      const message = await stream.finalMessage();
      assert.equal(message.type, "message");
      assert.equal(message.stop_reason, "end_turn");
      assert.equal(message.content.length, 1);
      const text = (message.content[0] as Anthropic.TextBlock).text;
      assert.match(text, /^The local model answers [0-9a-f]{8} from the café\.$/);
      assert.equal(deltas, text);
      assert.ok(message.usage.output_tokens > 0);
      const record = await edrFor(response.headers.get("x-request-id"));
      assert.equal(record.stream, true);
      assert.equal(record.failure, null);
    });

    await t.step("a streamed tool call resolves to a tool_use block with its input object", async () => {
      const message = await client.messages.stream({
        model: "auto",
        max_tokens: 128,
        tools: [{
          name: "get_weather",
          input_schema: { type: "object", properties: { city: { type: "string" } } },
        }],
        messages: [{ role: "user", content: "weather, streamed" }],
      }).finalMessage();
      assert.equal(message.stop_reason, "tool_use");
      const block = message.content.find((b) => b.type === "tool_use") as Anthropic.ToolUseBlock;
      assert.equal(block.name, "get_weather");
      assert.deepEqual(block.input, { city: "Paris" });
      requestIds.push((await h.records()).at(-1)!.request_id);
    });

    await t.step("a local stream that fails midway reaches the Anthropic SDK as a thrown error", async () => {
      h.ollama.mode = "midstream_error";
      try {
        const stream = client.messages.stream({
          model: "auto",
          max_tokens: 128,
          messages: [{ role: "user", content: "stream then fail" }],
        });
        let deltas = "";
        stream.on("text", (text) => deltas += text);
        const { response } = await stream.withResponse();
        const error = await stream.finalMessage().then(() => null, (e) => e);
        assert.ok(error instanceof Anthropic.APIError, `expected APIError, got ${error}`);
        assert.ok(deltas.length > 0, "content arrived before the error");
        const record = await edrFor(response.headers.get("x-request-id"));
        assert.equal(record.failure?.stage, "stream");
      } finally {
        h.ollama.mode = "normal";
      }
    });

    await t.step("a request without max_tokens is an Anthropic-shaped 400 the SDK raises", async () => {
      const error = await client.messages
        .create(
          { model: "auto", messages: [{ role: "user", content: "hi" }] } as unknown as Parameters<
            typeof client.messages.create
          >[0],
        )
        .catch((e) => e);
      assert.ok(error instanceof Anthropic.BadRequestError, `expected BadRequestError, got ${error}`);
      assert.equal(error.status, 400);
      const body = error.error as { type: string; error: { type: string; message: string } };
      assert.equal(body.type, "error");
      assert.equal(body.error.type, "invalid_request_error");
      assert.match(body.error.message, /max_tokens/);
      const record = await edrFor(error.headers?.get("x-request-id") ?? null);
      assert.equal(record.failure?.type, "validation_error");
    });

    await t.step("the raw 400 body is exactly Anthropic's error envelope", async () => {
      const response = await fetch(`${h.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", "x-api-key": "x", "anthropic-version": "2023-06-01" },
        body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "hi" }] }),
      });
      const body = await response.json();
      assert.equal(response.status, 400);
      assert.deepEqual(Object.keys(body).sort(), ["error", "type"]);
      assert.equal(body.type, "error");
      assert.equal(typeof body.error.message, "string");
      await edrFor(response.headers.get("x-request-id"));
    });

    await t.step(
      "x-routing-contract SENSITIVE with local down is a 503 in Anthropic's error shape",
      async () => {
        const anthropicBefore = h.anthropic.requests.length;
        await healthBecomes(h, "unfit", () => h.ollama.stop());
        try {
          const error = await client.messages
            .create(
              { model: "auto", max_tokens: 64, messages: [{ role: "user", content: "sensitive" }] },
              { headers: { "x-routing-contract": JSON.stringify({ classification: "SENSITIVE" }) } },
            )
            .catch((e) => e);
          assert.ok(error instanceof Anthropic.APIError, `expected APIError, got ${error}`);
          assert.equal(error.status, 503);
          const body = error.error as { type: string; error: { type: string; message: string } };
          assert.equal(body.type, "error");
          // A refusal by policy is no overload: "try elsewhere" would be wrong advice.
          assert.equal(body.error.type, "api_error");
          assert.equal(error.headers?.get("x-hi-reason"), "LOCAL_UNAVAILABLE_FOR_SENSITIVE");
          assert.equal(error.headers?.get("x-should-retry"), "false");
          const record = await edrFor(error.headers?.get("x-request-id") ?? null);
          assert.equal(record.failure?.type, "policy_rejection");
          assert.equal(record.effective_contract?.classification, "SENSITIVE");
          assert.deepEqual(record.attempts, []);
          assert.equal(h.anthropic.requests.length, anthropicBefore, "nothing went to the cloud");
        } finally {
          await healthBecomes(h, "fit", () => h.ollama.restart());
        }
      },
    );

    await t.step("each request left exactly one EDR, all for /v1/messages", async () => {
      const records = await h.records();
      assert.equal(records.length, requestIds.length);
      assert.deepEqual(records.map((r) => r.request_id).sort(), [...requestIds].sort());
      assert.ok(records.every((r) => r.endpoint === "/v1/messages"));
    });
  } finally {
    await h.close();
  }
});
