/**
 * The local model's remaining fidelity gaps, through `deno task serve` as users run it: a forced tool is
 * answered by Ollama as JSON in the tool's schema and comes back as that tool's call (how Anthropic SDK
 * clients ask for structured output), `top_k` reaches Ollama, `num_ctx` is recorded so a long prompt
 * replays to MATCH, and Anthropic API fields the router does not carry are refused by name.
 */
import assert from "node:assert/strict";
import { edrPath, type EdrRecord } from "../../lib/edr/mod.ts";
import { runTask, type ServedRouter, startServe, startServeHealthy } from "./serve_harness.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const ANSWER_SCHEMA = {
  type: "object",
  properties: { answer: { type: "string" }, note: { type: "string" } },
  required: ["answer", "note"],
};
const LOCAL_ONLY = { provider_allowlist: ["local"] };

async function post(
  router: ServedRouter,
  path: "/v1/messages" | "/v1/chat/completions",
  body: Record<string, unknown>,
): Promise<{ status: number; requestId: string; json: Json; text: string }> {
  const response = await fetch(`${router.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
    body: JSON.stringify(body),
  });
  const text = await response.text();
  let json: Json = null;
  try {
    json = JSON.parse(text);
  } catch {
    // A stream: the caller reads `text`.
  }
  return { status: response.status, requestId: response.headers.get("x-request-id") ?? "", json, text };
}

/** The `data` of each event of an SSE body, parsed. */
function sseData(text: string): Json[] {
  return text.split("\n\n").flatMap((event) => {
    const data = event.split("\n").find((line) => line.startsWith("data: "));
    return data && data !== "data: [DONE]" ? [JSON.parse(data.slice(6))] : [];
  });
}

const lastOllama = (router: ServedRouter): Json => router.ollama.requests.at(-1);

const answerTool = { name: "json", description: "Respond with a JSON object.", input_schema: ANSWER_SCHEMA };
const weatherTool = {
  name: "get_weather",
  input_schema: { type: "object", properties: { city: { type: "string" } } },
};

Deno.test("a forced tool on the local model comes back as that tool's call", async (t) => {
  const router = await startServe();
  try {
    await t.step(
      "/v1/messages forcing one tool: Ollama gets its schema as format, the client a tool_use of it",
      async () => {
        const { status, requestId, json } = await post(router, "/v1/messages", {
          model: "auto",
          max_tokens: 200,
          messages: [{ role: "user", content: "Answer as JSON." }],
          tools: [answerTool],
          tool_choice: { type: "tool", name: "json" },
          routing_contract: LOCAL_ONLY,
        });
        assert.equal(status, 200, JSON.stringify(json));
        const sent = lastOllama(router);
        assert.deepEqual(sent.format, ANSWER_SCHEMA);
        assert.equal(sent.tools, undefined, "no tools go to Ollama");
        assert.equal(json.stop_reason, "tool_use");
        assert.equal(json.content.length, 1);
        const [block] = json.content;
        assert.equal(block.type, "tool_use");
        assert.equal(block.name, "json");
        assert.match(block.id, /^toolu_|^call_/);
        assert.equal(typeof block.input.answer, "string");
        assert.equal(block.input.note, "café");
        const record = await router.record(requestId);
        assert.deepEqual(record.attempts.map((a) => [a.provider, a.outcome]), [["local", "ok"]]);
      },
    );

    await t.step("the same, streamed: one tool_use block whose input deltas are the JSON", async () => {
      const { status, text } = await post(router, "/v1/messages", {
        model: "auto",
        max_tokens: 200,
        stream: true,
        messages: [{ role: "user", content: "Answer as JSON." }],
        tools: [answerTool],
        tool_choice: { type: "any" },
        routing_contract: LOCAL_ONLY,
      });
      assert.equal(status, 200, text);
      const events = sseData(text);
      const starts = events.filter((e) => e.type === "content_block_start");
      assert.deepEqual(starts.map((e) => [e.content_block.type, e.content_block.name]), [[
        "tool_use",
        "json",
      ]]);
      const input = events.filter((e) => e.delta?.type === "input_json_delta").map((e) =>
        e.delta.partial_json
      )
        .join("");
      assert.equal(JSON.parse(input).note, "café");
      assert.equal(events.find((e) => e.type === "message_delta")?.delta.stop_reason, "tool_use");
    });

    await t.step("an OpenAI client naming one function gets that function's call", async () => {
      const { status, json } = await post(router, "/v1/chat/completions", {
        model: "auto",
        messages: [{ role: "user", content: "Answer as JSON." }],
        tools: [{ type: "function", function: { name: "json", parameters: ANSWER_SCHEMA } }, {
          type: "function",
          function: { name: "get_weather", parameters: weatherTool.input_schema },
        }],
        tool_choice: { type: "function", function: { name: "json" } },
        routing_contract: LOCAL_ONLY,
      });
      assert.equal(status, 200, JSON.stringify(json));
      assert.deepEqual(lastOllama(router).format, ANSWER_SCHEMA);
      const choice = json.choices[0];
      assert.equal(choice.finish_reason, "tool_calls");
      assert.equal(choice.message.content, null);
      assert.equal(choice.message.tool_calls[0].function.name, "json");
      assert.equal(JSON.parse(choice.message.tool_calls[0].function.arguments).note, "café");
    });

    await t.step('"any" among two tools stays refused by name, saying why', async () => {
      const before = router.ollama.requests.length;
      const { status, requestId, json } = await post(router, "/v1/messages", {
        model: "auto",
        max_tokens: 200,
        messages: [{ role: "user", content: "weather in Paris?" }],
        tools: [answerTool, weatherTool],
        tool_choice: { type: "any" },
        routing_contract: LOCAL_ONLY,
      });
      assert.equal(status, 400, JSON.stringify(json));
      assert.equal(json.error.code, "UNSUPPORTED_FIELD");
      assert.match(json.error.message, /cannot be made to pick one of several tools/);
      assert.equal(router.ollama.requests.length, before, "Ollama was not called");
      assert.equal((await router.record(requestId)).failure?.code, "UNSUPPORTED_FIELD");
    });
  } finally {
    await router.close();
  }
});

Deno.test("top_k from /v1/messages reaches the local model and the record, and never OpenAI", async (t) => {
  const router = await startServe();
  const ask = (allowlist: string[]) =>
    post(router, "/v1/messages", {
      model: "auto",
      max_tokens: 100,
      top_k: 40,
      messages: [{ role: "user", content: "hello there" }],
      routing_contract: { provider_allowlist: allowlist },
    });
  try {
    await t.step("the local model gets options.top_k, and the EDR records it", async () => {
      const { status, requestId, json } = await ask(["local"]);
      assert.equal(status, 200, JSON.stringify(json));
      assert.equal(lastOllama(router).options.top_k, 40);
      assert.equal((await router.record(requestId)).environment.options.top_k, 40);
    });

    await t.step("OpenAI, which has no top_k, is skipped for Anthropic, which gets it", async () => {
      const openaiBefore = router.openai.requests.length;
      const { status, requestId, json } = await ask(["openai", "anthropic"]);
      assert.equal(status, 200, JSON.stringify(json));
      assert.equal(router.openai.requests.length, openaiBefore, "OpenAI was called");
      assert.equal((router.anthropic.requests.at(-1)!.body as Json).top_k, 40);
      const record = await router.record(requestId);
      assert.ok(record.constraints_applied.includes("field_unsupported:openai:top_k"));
    });

    await t.step("with only OpenAI allowed it is a 400 naming top_k", async () => {
      const { status, json } = await ask(["openai"]);
      assert.equal(status, 400, JSON.stringify(json));
      assert.equal(json.error.code, "UNSUPPORTED_FIELD");
      assert.equal(json.error.param, "top_k");
      assert.match(json.error.message, /^top_k is honoured only by local or anthropic/);
    });
  } finally {
    await router.close();
  }
});

Deno.test("a local record of a prompt longer than Ollama's default context replays to MATCH with its num_ctx", async () => {
  const router = await startServeHealthy();
  try {
    // About 6,000 tokens: past Ollama's default context, within the policy's 32k window for qwen3:8b.
    const prompt = "Summarize this long note. ".repeat(1000);
    const answer = await post(router, "/v1/chat/completions", {
      model: "qwen3:8b",
      messages: [{ role: "user", content: prompt }],
      routing_contract: { classification: "INTERNAL" },
    });
    assert.equal(answer.status, 200, answer.text);
    const served = lastOllama(router).options.num_ctx;
    assert.equal(served, 32768);
    const record: EdrRecord = await router.record(answer.requestId);
    assert.equal(record.decision.provider, "local");
    assert.equal(record.environment.options.num_ctx, served);
    const before = router.ollama.requests.length;
    const { code, stdout, output } = await runTask(
      ["replay", "--json", `${router.artifactsDir}/${edrPath(record)}`],
      { OLLAMA_HOST: router.ollama.url, HI_ARTIFACTS_DIR: router.artifactsDir },
    );
    assert.equal(JSON.parse(stdout || "{}").status, "MATCH", output);
    assert.equal(code, 0);
    const replayed = router.ollama.requests.slice(before) as Json[];
    assert.equal(replayed.length, 1);
    assert.equal(replayed[0].options.num_ctx, served);
  } finally {
    await router.close();
  }
});
