import assert from "node:assert/strict";
import OpenAI from "openai";
import { OpenAIStreamEncoder, toOpenAIResponse } from "../../lib/inbound/openai/mod.ts";
import { parseSse } from "../../lib/providers/sse.ts";
import type { ChatResult, StreamEvent } from "../../lib/canonical/mod.ts";
import type { ClientErrorInfo, ClientResponseMeta } from "../../lib/inbound/mod.ts";

const META: ClientResponseMeta = { id: "chatcmpl-0123abcd", created: 1764201600, model: "qwen3:8b" };
const USAGE = { prompt_tokens: 26, completion_tokens: 9, total_tokens: 35 };

const TEXT_EVENTS: StreamEvent[] = [
  { type: "text", text: "Bonjour " },
  { type: "text", text: "🙂 café" },
  { type: "finish", finish_reason: "stop", usage: USAGE },
];

const TOOL_EVENTS: StreamEvent[] = [
  { type: "text", text: "Let me check." },
  { type: "tool_call_start", index: 0, id: "call_a", name: "get_weather" },
  { type: "tool_call_args", index: 0, fragment: '{"city":' },
  { type: "tool_call_start", index: 1, id: "call_b", name: "get_time" },
  { type: "tool_call_args", index: 0, fragment: '"Paris"}' },
  { type: "tool_call_args", index: 1, fragment: '{"tz":"CET"}' },
  { type: "finish", finish_reason: "tool_calls", usage: USAGE },
];

function decode(bytes: Uint8Array): string {
  return new TextDecoder().decode(bytes);
}

async function chunksOf(bytes: Uint8Array): Promise<Record<string, unknown>[]> {
  const events = await Array.fromAsync(parseSse(ReadableStream.from([bytes])));
  return events.map((e) => e.data === "[DONE]" ? { done: true } : JSON.parse(e.data));
}

interface Script {
  events: StreamEvent[];
  error?: ClientErrorInfo;
}

/** A tiny OpenAI-compatible server that replays a script through the encoder, as the router will. */
function serveScript(script: Script) {
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, async (req) => {
    const body = await req.json();
    const meta = { ...META, model: body.model };
    if (body.stream !== true) {
      const result: ChatResult = {
        model: body.model,
        content: "Bonjour 🙂",
        tool_calls: [],
        finish_reason: "stop",
        usage: USAGE,
      };
      return Response.json(toOpenAIResponse(result, meta));
    }
    const encoder = new OpenAIStreamEncoder(meta, {
      includeUsage: body.stream_options?.include_usage === true,
    });
    const parts: Uint8Array[] = [encoder.start()];
    for (const event of script.events) parts.push(encoder.encode(event));
    parts.push(script.error ? encoder.error(script.error) : encoder.done());
    return new Response(ReadableStream.from(parts), {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
    });
  });
  const client = new OpenAI({
    apiKey: "sk-local",
    baseURL: `http://127.0.0.1:${server.addr.port}/v1`,
    maxRetries: 0,
  });
  return { client, close: () => server.shutdown() };
}

Deno.test("openai client format: chat.completion body", async (t) => {
  await t.step("a text answer has message role, content, refusal null, logprobs null and usage", () => {
    const body = toOpenAIResponse({
      upstream_id: "up-1",
      model: "claude-x",
      content: "hi",
      tool_calls: [],
      finish_reason: "stop",
      usage: USAGE,
    }, META);
    assert.deepEqual(body, {
      id: META.id,
      object: "chat.completion",
      created: META.created,
      model: META.model,
      choices: [{
        index: 0,
        message: { role: "assistant", content: "hi", refusal: null },
        logprobs: null,
        finish_reason: "stop",
      }],
      usage: USAGE,
    });
  });

  await t.step("tool calls appear only when there are some", () => {
    const calls = [{ id: "call_1", type: "function" as const, function: { name: "f", arguments: "{}" } }];
    const body = toOpenAIResponse(
      { model: "m", content: null, tool_calls: calls, finish_reason: "tool_calls", usage: USAGE },
      META,
    );
    assert.deepEqual(body.choices[0].message.tool_calls, calls);
    assert.equal(body.choices[0].message.content, null);
  });
});

Deno.test("openai client format: what the model said besides its answer", async (t) => {
  const base: ChatResult = {
    model: "m",
    content: "42",
    tool_calls: [],
    finish_reason: "stop",
    usage: USAGE,
  };
  const logprobs = {
    content: [{ token: "42", logprob: -0.1, bytes: [52, 50], top_logprobs: [] }],
    refusal: null,
  };

  await t.step("refusal, logprobs and reasoning_content pass through on the message", () => {
    const body = toOpenAIResponse(
      { ...base, content: null, refusal: "no", logprobs, reasoning: "hmm" },
      META,
    );
    assert.equal(body.choices[0].message.refusal, "no");
    assert.equal(body.choices[0].message.reasoning_content, "hmm");
    assert.deepEqual(body.choices[0].logprobs, logprobs);
  });

  await t.step("usage details appear only for the counts the upstream reported", () => {
    assert.deepEqual(toOpenAIResponse(base, META).usage, USAGE);
    const body = toOpenAIResponse(
      { ...base, usage_details: { cached_tokens: 5, reasoning_tokens: 2 } },
      META,
    );
    assert.deepEqual(body.usage, {
      ...USAGE,
      prompt_tokens_details: { cached_tokens: 5 },
      completion_tokens_details: { reasoning_tokens: 2 },
    });
  });

  await t.step(
    "a stream carries reasoning_content, refusal and logprobs deltas and usage details",
    async () => {
      const encoder = new OpenAIStreamEncoder(META, { includeUsage: true });
      const bytes = [
        encoder.encode({ type: "reasoning", text: "hmm" }),
        encoder.encode({ type: "text", text: "42", logprobs }),
        encoder.encode({ type: "refusal", text: "no" }),
        encoder.encode({
          type: "finish",
          finish_reason: "stop",
          usage: USAGE,
          usage_details: { cached_tokens: 5 },
        }),
      ];
      const chunks = (await chunksOf(concat(bytes))) as {
        choices: { delta: Record<string, unknown>; logprobs: unknown }[];
        usage: Record<string, unknown> | null;
      }[];
      assert.deepEqual(chunks[0].choices[0].delta, { reasoning_content: "hmm" });
      assert.deepEqual(chunks[1].choices[0].delta, { content: "42" });
      assert.deepEqual(chunks[1].choices[0].logprobs, logprobs);
      assert.deepEqual(chunks[2].choices[0].delta, { refusal: "no" });
      assert.deepEqual(chunks.at(-1)?.usage, { ...USAGE, prompt_tokens_details: { cached_tokens: 5 } });
    },
  );
});

function concat(parts: Uint8Array[]): Uint8Array {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

Deno.test("openai client format: stream chunks", async (t) => {
  await t.step("every chunk shares id, object, created and model; the first carries the role", async () => {
    const encoder = new OpenAIStreamEncoder(META, { includeUsage: false });
    const chunks = await chunksOf(encoder.start());
    assert.deepEqual(chunks, [{
      id: META.id,
      object: "chat.completion.chunk",
      created: META.created,
      model: META.model,
      choices: [{ index: 0, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }],
    }]);
    const text = (await chunksOf(encoder.encode({ type: "text", text: "Hel" })))[0];
    assert.deepEqual(text.choices, [{
      index: 0,
      delta: { content: "Hel" },
      logprobs: null,
      finish_reason: null,
    }]);
    assert.equal("usage" in text, false);
  });

  await t.step("tool calls open with id, type and name, then carry argument fragments by index", async () => {
    const encoder = new OpenAIStreamEncoder(META, { includeUsage: false });
    const [start] = await chunksOf(
      encoder.encode({ type: "tool_call_start", index: 1, id: "call_9", name: "f" }),
    );
    assert.deepEqual((start.choices as Record<string, unknown>[])[0].delta, {
      tool_calls: [{ index: 1, id: "call_9", type: "function", function: { name: "f", arguments: "" } }],
    });
    const [args] = await chunksOf(encoder.encode({ type: "tool_call_args", index: 1, fragment: '{"a"' }));
    assert.deepEqual((args.choices as Record<string, unknown>[])[0].delta, {
      tool_calls: [{ index: 1, function: { arguments: '{"a"' } }],
    });
  });

  await t.step(
    "with include_usage every chunk has usage null and the last has empty choices and usage",
    async () => {
      const encoder = new OpenAIStreamEncoder(META, { includeUsage: true });
      const start = (await chunksOf(encoder.start()))[0];
      assert.equal(start.usage, null);
      const finish = await chunksOf(
        encoder.encode({ type: "finish", finish_reason: "length", usage: USAGE }),
      );
      assert.equal(finish.length, 2);
      assert.deepEqual(finish[0].choices, [{ index: 0, delta: {}, logprobs: null, finish_reason: "length" }]);
      assert.equal(finish[0].usage, null);
      assert.deepEqual(finish[1].choices, []);
      assert.deepEqual(finish[1].usage, USAGE);
    },
  );

  await t.step("without include_usage the finish is one chunk and carries no usage", async () => {
    const encoder = new OpenAIStreamEncoder(META, { includeUsage: false });
    const finish = await chunksOf(encoder.encode({ type: "finish", finish_reason: "stop", usage: USAGE }));
    assert.equal(finish.length, 1);
    assert.equal("usage" in finish[0], false);
  });

  await t.step("done is the [DONE] sentinel and error is an OpenAI error event", () => {
    const encoder = new OpenAIStreamEncoder(META, { includeUsage: false });
    assert.equal(decode(encoder.done()), "data: [DONE]\n\n");
    const error = decode(
      encoder.error({ message: "boom", type: "server_error", code: "UPSTREAM_STREAM_CUT", status: 502 }),
    );
    assert.equal(
      error,
      'data: {"error":{"message":"boom","type":"server_error","code":"UPSTREAM_STREAM_CUT","param":null}}\n\n',
    );
  });
});

Deno.test("openai client format: the official openai SDK consumes it", async (t) => {
  await t.step("a streamed text answer arrives whole, with usage when asked", async () => {
    const fake = serveScript({ events: TEXT_EVENTS });
    try {
      const stream = await fake.client.chat.completions.create({
        model: "qwen3:8b",
        messages: [{ role: "user", content: "hi" }],
        stream: true,
        stream_options: { include_usage: true },
      });
      let content = "";
      let usage: OpenAI.CompletionUsage | null | undefined;
      let finish: string | null = null;
      let role: string | undefined;
      for await (const chunk of stream) {
        assert.equal(chunk.id, META.id);
        assert.equal(chunk.object, "chat.completion.chunk");
        const choice = chunk.choices[0];
        role ??= choice?.delta.role;
        content += choice?.delta.content ?? "";
        finish = choice?.finish_reason ?? finish;
        if (chunk.usage) usage = chunk.usage;
      }
      assert.equal(role, "assistant");
      assert.equal(content, "Bonjour 🙂 café");
      assert.equal(finish, "stop");
      assert.deepEqual(usage, USAGE);
    } finally {
      await fake.close();
    }
  });

  await t.step("streamed tool calls assemble into whole calls in the SDK's stream helper", async () => {
    const fake = serveScript({ events: TOOL_EVENTS });
    try {
      const runner = fake.client.chat.completions.stream({
        model: "qwen3:8b",
        messages: [{ role: "user", content: "hi" }],
        stream_options: { include_usage: true },
      });
      const completion = await runner.finalChatCompletion();
      const message = completion.choices[0].message;
      assert.equal(message.content, "Let me check.");
      assert.equal(completion.choices[0].finish_reason, "tool_calls");
      assert.deepEqual(
        message.tool_calls?.map((c) =>
          c.type === "function" ? [c.id, c.function.name, c.function.arguments] : []
        ),
        [["call_a", "get_weather", '{"city":"Paris"}'], ["call_b", "get_time", '{"tz":"CET"}']],
      );
      assert.deepEqual(completion.usage, USAGE);
    } finally {
      await fake.close();
    }
  });

  await t.step("a non-streamed body parses as a chat completion", async () => {
    const fake = serveScript({ events: [] });
    try {
      const completion = await fake.client.chat.completions.create({
        model: "qwen3:8b",
        messages: [{ role: "user", content: "hi" }],
      });
      assert.equal(completion.choices[0].message.content, "Bonjour 🙂");
      assert.deepEqual(completion.usage, USAGE);
    } finally {
      await fake.close();
    }
  });

  await t.step("an error ending makes the SDK throw instead of finishing", async () => {
    const fake = serveScript({
      events: [{ type: "text", text: "partial" }],
      error: {
        message: "ollama closed the stream before it finished",
        type: "server_error",
        code: "UPSTREAM_STREAM_CUT",
        status: 502,
      },
    });
    try {
      const stream = await fake.client.chat.completions.create({
        model: "qwen3:8b",
        messages: [{ role: "user", content: "hi" }],
        stream: true,
      });
      let content = "";
      await assert.rejects(
        (async () => {
          for await (const chunk of stream) content += chunk.choices[0]?.delta.content ?? "";
        })(),
        (error: unknown) => {
          assert.ok(error instanceof OpenAI.APIError);
          assert.equal(error.code, "UPSTREAM_STREAM_CUT");
          assert.match(error.message, /closed the stream/);
          return true;
        },
      );
      assert.equal(content, "partial");
    } finally {
      await fake.close();
    }
  });
});
