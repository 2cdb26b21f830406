import assert from "node:assert/strict";
import OpenAI from "openai";
import { parseNdjson } from "../../lib/providers/ndjson.ts";
import { parseSse } from "../../lib/providers/sse.ts";
import { startFakeOllama } from "./fake_ollama.ts";
import { startFakeOpenAI } from "./fake_openai.ts";
import { tear } from "./fake_state.ts";

const HELLO = {
  model: "qwen3:8b",
  messages: [{ role: "user", content: "unique-prompt-words please" }],
  options: { seed: 42, temperature: 0 },
};

function post(url: string, body: unknown, init: RequestInit = {}): Promise<Response> {
  return fetch(url, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: typeof body === "string" ? body : JSON.stringify(body),
    ...init,
  });
}

type Line = Record<string, unknown> & { message?: { content?: string; tool_calls?: unknown[] } };

async function lines(response: Response): Promise<Line[]> {
  return await Array.fromAsync(parseNdjson(response.body!)) as Line[];
}

Deno.test("fake ollama enforces protocols.md", async (t) => {
  const fake = startFakeOllama();
  const chat = `${fake.url}/api/chat`;
  try {
    await t.step("it listens on 127.0.0.1 and reports its version", async () => {
      assert.match(fake.url, /^http:\/\/127\.0\.0\.1:\d+$/);
      assert.deepEqual(await (await fetch(`${fake.url}/api/version`)).json(), { version: "0.12.6" });
    });

    await t.step("tags list the default models with 64-hex digests and parameter sizes", async () => {
      const tags = await (await fetch(`${fake.url}/api/tags`)).json();
      const byName = Object.fromEntries(
        tags.models.map((
          m: { name: string; details: { parameter_size: string } },
        ) => [m.name, m.details.parameter_size]),
      );
      assert.deepEqual(byName, { "qwen3:8b": "8.2B", "qwen3:32b": "32.8B", "llama3.2:1b": "1.2B" });
      for (const m of tags.models) assert.match(m.digest, /^[0-9a-f]{64}$/);
    });

    await t.step("show answers capabilities and 404s an unknown model", async () => {
      const show = await (await post(`${fake.url}/api/show`, { model: "qwen3:8b" })).json();
      assert.ok(show.capabilities.includes("tools"));
      assert.equal(show.details.parameter_size, "8.2B");
      const missing = await post(`${fake.url}/api/show`, { model: "nope" });
      assert.equal(missing.status, 404);
      await missing.body?.cancel();
    });

    await t.step("ps is empty until a model has answered", async () => {
      assert.deepEqual(await (await fetch(`${fake.url}/api/ps`)).json(), { models: [] });
      const r = await post(chat, { ...HELLO, stream: false });
      await r.body?.cancel();
      const ps = await (await fetch(`${fake.url}/api/ps`)).json();
      assert.deepEqual(ps.models.map((m: { name: string }) => m.name), ["qwen3:8b"]);
      assert.ok(ps.models[0].expires_at);
    });

    await t.step("chat streams NDJSON when stream is not given, ending with done:true", async () => {
      const response = await post(chat, HELLO);
      assert.equal(response.headers.get("content-type"), "application/x-ndjson");
      const all = await lines(response);
      assert.ok(all.length > 2);
      assert.equal(all.at(-1)!.done, true);
      assert.equal(all.at(-1)!.done_reason, "stop");
      assert.ok(all.slice(0, -1).every((l) => l.done === false));
    });

    await t.step("answers are deterministic, depend on the seed, and do not echo the prompt", async () => {
      const answer = async (seed: number) => {
        const r = await post(chat, { ...HELLO, options: { seed }, stream: false });
        return (await r.json()).message.content as string;
      };
      const a = await answer(42);
      assert.equal(a, await answer(42));
      assert.notEqual(a, await answer(7));
      assert.doesNotMatch(a, /unique-prompt-words/);
    });

    await t.step("an unknown model is 404 with Ollama's exact message", async () => {
      const r = await post(chat, { ...HELLO, model: "x" });
      assert.equal(r.status, 404);
      assert.deepEqual(await r.json(), { error: 'model "x" not found, try pulling it first' });
    });

    await t.step("a body that is not JSON is a 400", async () => {
      const r = await post(chat, "{not json");
      assert.equal(r.status, 400);
      assert.equal(typeof (await r.json()).error, "string");
    });

    await t.step("an image with a data: prefix is a 400; bare base64 passes", async () => {
      const bad = await post(chat, {
        ...HELLO,
        stream: false,
        messages: [{ role: "user", content: "see", images: ["data:image/png;base64,AAAA"] }],
      });
      assert.equal(bad.status, 400);
      await bad.body?.cancel();
      const good = await post(chat, {
        ...HELLO,
        stream: false,
        messages: [{ role: "user", content: "see", images: ["AAAA"] }],
      });
      assert.equal(good.status, 200);
      await good.body?.cancel();
    });

    await t.step("content parts and string tool arguments are 400s, as in Ollama's Go decoder", async () => {
      const parts = await post(chat, {
        ...HELLO,
        messages: [{ role: "user", content: [{ type: "text", text: "x" }] }],
      });
      assert.equal(parts.status, 400);
      await parts.body?.cancel();
      const args = await post(chat, {
        ...HELLO,
        messages: [{
          role: "assistant",
          content: "",
          tool_calls: [{ function: { name: "f", arguments: "{}" } }],
        }],
      });
      assert.equal(args.status, 400);
      await args.body?.cancel();
    });

    await t.step("tools with a user turn last get one tool call to the first tool", async () => {
      const r = await post(chat, {
        ...HELLO,
        stream: false,
        tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
      });
      const body = await r.json();
      assert.deepEqual(body.message.tool_calls, [{
        function: { name: "get_weather", arguments: { city: "Paris" } },
      }]);
      assert.equal(body.done_reason, "stop");
    });

    await t.step("a small num_predict ends with done_reason length", async () => {
      const r = await post(chat, { ...HELLO, stream: false, options: { num_predict: 2 } });
      assert.equal((await r.json()).done_reason, "length");
    });

    await t.step("writes are torn mid-line and mid-character", () => {
      const bytes = new TextEncoder().encode('{"message":{"content":"café"},"done":false}\n{"done":true}\n');
      const pieces = tear(bytes);
      assert.ok(pieces.length > 3);
      assert.ok(pieces.slice(0, -1).some((p) => p.at(-1) !== 10));
      const fatal = new TextDecoder("utf-8", { fatal: true });
      assert.ok(pieces.some((p) => {
        try {
          fatal.decode(p);
          return false;
        } catch {
          return true;
        }
      }));
    });

    await t.step("busy, 500 and auth_fail answer with Ollama's error bodies", async () => {
      fake.mode = "busy";
      const busy = await post(chat, HELLO);
      assert.equal(busy.status, 503);
      assert.deepEqual(await busy.json(), {
        error: "server busy, please try again.  maximum pending requests exceeded",
      });
      fake.mode = "error500";
      const crashed = await post(chat, HELLO);
      assert.equal(crashed.status, 500);
      assert.equal(typeof (await crashed.json()).error, "string");
      fake.mode = "auth_fail";
      const denied = await post(chat, HELLO);
      assert.equal(denied.status, 401);
      await denied.body?.cancel();
    });

    await t.step("a cut stream ends without done:true; a mid-stream error is an error line", async () => {
      fake.mode = "cut_stream";
      const cut = await lines(await post(chat, HELLO));
      assert.ok(cut.length > 0);
      assert.ok(cut.every((l) => l.done !== true && l.error === undefined));
      fake.mode = "midstream_error";
      const broken = await lines(await post(chat, HELLO));
      assert.ok(broken[0].message?.content);
      assert.equal(typeof broken.at(-1)!.error, "string");
      assert.ok(broken.every((l) => l.done !== true));
    });

    await t.step("a hanging request ends cleanly when the client aborts, and is counted", async () => {
      fake.mode = "hang";
      const before = fake.aborted;
      const requests = fake.requests.length;
      const controller = new AbortController();
      const pending = post(chat, HELLO, { signal: controller.signal });
      await fake.waitForRequests(requests + 1);
      await fake.waitForInFlight("qwen3:8b", 1);
      controller.abort();
      await assert.rejects(pending);
      await fake.waitForAborted(before + 1);
      assert.equal(fake.inFlight.get("qwen3:8b"), 0);
    });

    await t.step("hold keeps requests in flight per model until released", async () => {
      fake.mode = "normal";
      const hold = fake.hold();
      const a = post(chat, { ...HELLO, stream: false });
      const b = post(chat, { ...HELLO, stream: false });
      await fake.waitForInFlight("qwen3:8b", 2);
      assert.equal(fake.maxInFlight.get("qwen3:8b"), 2);
      hold.release();
      for (const r of await Promise.all([a, b])) assert.equal((await r.json()).done, true);
      await fake.waitFor(() => fake.inFlight.get("qwen3:8b") === 0);
    });

    await t.step("stop refuses connections and restart comes back on the same port", async () => {
      const url = fake.url;
      await fake.stop();
      await assert.rejects(fetch(`${url}/api/version`), TypeError);
      fake.restart();
      assert.equal(fake.url, url);
      assert.equal((await (await fetch(`${url}/api/version`)).json()).version, "0.12.6");
    });

    await t.step("close releases a held request", async () => {
      const hold = fake.hold();
      const pending = post(chat, { ...HELLO, stream: false });
      await fake.waitForInFlight("qwen3:8b", 1);
      await fake.close();
      const r = await pending;
      assert.equal(r.status, 503);
      await r.body?.cancel();
      hold.release();
    });
  } finally {
    await fake.close();
  }
});

const OPENAI_HELLO = {
  model: "gpt-4o-mini",
  messages: [{ role: "user", content: "unique-prompt-words" }],
  seed: 1,
};

Deno.test("fake openai enforces protocols.md", async (t) => {
  const fake = startFakeOpenAI();
  const chat = `${fake.url}/chat/completions`;
  const auth = { authorization: `Bearer ${fake.apiKey}`, "content-type": "application/json" };
  const call = (body: unknown, headers: Record<string, string> = auth, init: RequestInit = {}) =>
    fetch(chat, {
      method: "POST",
      headers,
      body: typeof body === "string" ? body : JSON.stringify(body),
      ...init,
    });
  const assertOpenAIError = async (r: Response, status: number, code: string | null) => {
    assert.equal(r.status, status);
    const body = await r.json();
    assert.deepEqual(Object.keys(body.error).sort(), ["code", "message", "param", "type"]);
    assert.equal(body.error.code, code);
    return body.error;
  };
  const events = async (r: Response) => (await Array.fromAsync(parseSse(r.body!))).map((e) => e.data);
  try {
    await t.step("its url ends in /v1 on 127.0.0.1", () => {
      assert.match(fake.url, /^http:\/\/127\.0\.0\.1:\d+\/v1$/);
    });

    await t.step("no bearer key or a wrong one is a 401 invalid_api_key", async () => {
      await assertOpenAIError(
        await call(OPENAI_HELLO, { "content-type": "application/json" }),
        401,
        "invalid_api_key",
      );
      const wrong = await assertOpenAIError(
        await call(OPENAI_HELLO, { ...auth, authorization: "Bearer sk-nope-nope-nope" }),
        401,
        "invalid_api_key",
      );
      assert.equal(wrong.type, "invalid_request_error");
      const models = await fetch(`${fake.url}/models`);
      await assertOpenAIError(models, 401, "invalid_api_key");
    });

    await t.step(
      "a missing model, empty messages, bad JSON and a stray stream_options are 400s",
      async () => {
        await assertOpenAIError(await call({ messages: OPENAI_HELLO.messages }), 400, null);
        const empty = await assertOpenAIError(
          await call({ model: "gpt-4o-mini", messages: [] }),
          400,
          "empty_array",
        );
        assert.equal(empty.param, "messages");
        await assertOpenAIError(await call("{oops"), 400, null);
        const stray = await assertOpenAIError(
          await call({ ...OPENAI_HELLO, stream_options: { include_usage: true } }),
          400,
          null,
        );
        assert.equal(stray.param, "stream_options");
      },
    );

    await t.step("an unknown model is 404 model_not_found", async () => {
      await assertOpenAIError(await call({ ...OPENAI_HELLO, model: "gpt-9" }), 404, "model_not_found");
    });

    await t.step("models are listed", async () => {
      const list = await (await fetch(`${fake.url}/models`, { headers: auth })).json();
      assert.equal(list.object, "list");
      assert.ok(list.data.some((m: { id: string }) => m.id === "gpt-4o-mini"));
    });

    await t.step("a complete answer is deterministic, non-ASCII and does not echo the prompt", async () => {
      const one = await (await call(OPENAI_HELLO)).json();
      const two = await (await call(OPENAI_HELLO)).json();
      assert.equal(one.object, "chat.completion");
      assert.equal(one.choices[0].message.content, two.choices[0].message.content);
      assert.match(one.choices[0].message.content, /🙂.*é/);
      assert.doesNotMatch(one.choices[0].message.content, /unique-prompt-words/);
    });

    await t.step("the usage chunk comes only when asked", async () => {
      const plain = await events(await call({ ...OPENAI_HELLO, stream: true }));
      assert.equal(plain.at(-1), "[DONE]");
      assert.ok(plain.slice(0, -1).every((d) => !("usage" in JSON.parse(d))));
      const withUsage = await events(
        await call({ ...OPENAI_HELLO, stream: true, stream_options: { include_usage: true } }),
      );
      const chunks = withUsage.slice(0, -1).map((d) => JSON.parse(d));
      assert.ok(chunks.slice(0, -1).every((c) => c.usage === null));
      assert.deepEqual(chunks.at(-1).choices, []);
      assert.ok(chunks.at(-1).usage.total_tokens > 0);
    });

    await t.step("tool calls stream as id and name first, then argument fragments", async () => {
      const data = await events(
        await call({
          ...OPENAI_HELLO,
          stream: true,
          tools: [{ type: "function", function: { name: "get_weather", parameters: { type: "object" } } }],
        }),
      );
      const deltas = data.slice(0, -1).map((d) => JSON.parse(d).choices[0]?.delta?.tool_calls?.[0]).filter(
        Boolean,
      );
      assert.equal(deltas[0].function.name, "get_weather");
      assert.match(deltas[0].id, /^call_/);
      assert.ok(deltas.slice(1).every((d: { id?: string }) => d.id === undefined));
      assert.deepEqual(
        JSON.parse(deltas.map((d: { function: { arguments: string } }) => d.function.arguments).join("")),
        {
          city: "Paris",
        },
      );
    });

    await t.step("the official SDK consumes the fake's torn stream", async () => {
      const client = new OpenAI({ apiKey: fake.apiKey, baseURL: fake.url, maxRetries: 0 });
      const complete = await client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "unique-prompt-words" }],
        seed: 1,
      });
      const stream = await client.chat.completions.create({
        model: "gpt-4o-mini",
        messages: [{ role: "user", content: "unique-prompt-words" }],
        seed: 1,
        stream: true,
      });
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      assert.equal(text, complete.choices[0].message.content);
    });

    await t.step("rate_limit, quota, busy, 500 and auth_fail answer OpenAI-shaped errors", async () => {
      fake.mode = "rate_limit";
      const limited = await call(OPENAI_HELLO);
      assert.equal(limited.headers.get("retry-after"), "7");
      await assertOpenAIError(limited, 429, "rate_limit_exceeded");
      fake.mode = "quota";
      await assertOpenAIError(await call(OPENAI_HELLO), 429, "insufficient_quota");
      fake.mode = "busy";
      await assertOpenAIError(await call(OPENAI_HELLO), 503, null);
      fake.mode = "error500";
      const crashed = await assertOpenAIError(await call(OPENAI_HELLO), 500, null);
      assert.equal(crashed.type, "server_error");
      fake.mode = "auth_fail";
      await assertOpenAIError(await call(OPENAI_HELLO), 401, "invalid_api_key");
    });

    await t.step("a cut stream has no [DONE]; a mid-stream error is a data error event", async () => {
      fake.mode = "cut_stream";
      const cut = await events(await call({ ...OPENAI_HELLO, stream: true }));
      assert.ok(cut.length > 0);
      assert.ok(!cut.includes("[DONE]"));
      fake.mode = "midstream_error";
      const broken = await events(await call({ ...OPENAI_HELLO, stream: true }));
      assert.ok(!broken.includes("[DONE]"));
      assert.equal(JSON.parse(broken.at(-1)!).error.type, "server_error");
    });

    await t.step("a hanging request ends when the client aborts, and is counted", async () => {
      fake.mode = "hang";
      const before = fake.aborted;
      const controller = new AbortController();
      const pending = call(OPENAI_HELLO, auth, { signal: controller.signal });
      await fake.waitForInFlight("gpt-4o-mini", 1);
      controller.abort();
      await assert.rejects(pending);
      await fake.waitForAborted(before + 1);
    });

    await t.step("hold keeps requests in flight until released", async () => {
      fake.mode = "normal";
      const hold = fake.hold();
      const a = call(OPENAI_HELLO);
      const b = call({ ...OPENAI_HELLO, model: "gpt-4o" });
      await fake.waitForInFlight("gpt-4o-mini", 1);
      await fake.waitForInFlight("gpt-4o", 1);
      hold.release();
      for (const r of await Promise.all([a, b])) assert.equal((await r.json()).object, "chat.completion");
      assert.equal(fake.maxInFlight.get("gpt-4o"), 1);
    });
  } finally {
    await fake.close();
  }
});
