/**
 * Ollama done right and OpenAI answers passed whole, through `deno task serve` with the fakes: the local
 * model runs with the policy's context window, thinks when asked and its thinking reaches the client,
 * what it cannot honour is refused by name (or served by a cloud provider that can), its tool calls get
 * ids of their own, `GET /v1/models` dates every model, and an OpenAI answer keeps its refusal, logprobs
 * and cache/reasoning token counts.
 */
import assert from "node:assert/strict";
import { FAKE_THINKING, OLLAMA_DEFAULT_NUM_CTX } from "../fakes/fake_ollama.ts";
import { FAKE_LOGPROB, FAKE_REFUSAL, FAKE_USAGE_DETAILS } from "../fakes/fake_openai.ts";
import { type ServedRouter, startServe } from "./serve_harness.ts";

// deno-lint-ignore no-explicit-any
type Json = any;

const WEATHER = {
  type: "function",
  function: { name: "get_weather", parameters: { type: "object", properties: { city: { type: "string" } } } },
};
const TIME = {
  type: "function",
  function: { name: "get_time", parameters: { type: "object", properties: { city: { type: "string" } } } },
};
const LOCAL_ONLY = { classification: "SENSITIVE" };
const OPENAI_ONLY = { provider_allowlist: ["openai"] };

async function post(
  router: ServedRouter,
  body: Record<string, unknown>,
): Promise<{ status: number; requestId: string; json: Json }> {
  const response = await fetch(`${router.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  });
  return {
    status: response.status,
    requestId: response.headers.get("x-request-id") ?? "",
    json: await response.json(),
  };
}

/** The `chat.completion.chunk` objects of a streamed answer (without `[DONE]`). */
async function stream(router: ServedRouter, body: Record<string, unknown>): Promise<Json[]> {
  const response = await fetch(`${router.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ ...body, stream: true }),
  });
  assert.equal(response.status, 200);
  const text = await response.text();
  return text.split("\n\n")
    .map((event) => event.replace(/^data: /, "").trim())
    .filter((data) => data !== "" && data !== "[DONE]")
    .map((data) => JSON.parse(data));
}

const deltas = (chunks: Json[], field: string): string =>
  chunks.map((c) => c.choices?.[0]?.delta?.[field] ?? "").join("");

Deno.test("the local model runs as the policy says and shows its work; OpenAI answers come back whole", async (t) => {
  const router = await startServe();
  try {
    await t.step(
      "a 20,000-token prompt is read whole: Ollama runs with the policy's 32k window",
      async () => {
        // 80,000 characters: about 20,000 tokens, past Ollama's own default context.
        const long = "lorem ipsum dolor sit amet ".repeat(2963).slice(0, 80_000);
        const { status, json } = await post(router, {
          model: "qwen3:8b",
          messages: [{ role: "user", content: long }],
        });
        assert.equal(status, 200, JSON.stringify(json));
        assert.equal(json.usage.prompt_tokens, 20_000);
        assert.ok(json.usage.prompt_tokens > OLLAMA_DEFAULT_NUM_CTX);
        assert.equal((router.ollama.requests.at(-1) as Json).options.num_ctx, 32768);
      },
    );

    await t.step(
      "reasoning_effort makes the local model think, and its thinking is reasoning_content",
      async () => {
        const { status, json } = await post(router, {
          model: "qwen3:8b",
          reasoning_effort: "high",
          messages: [{ role: "user", content: "why is the sky blue?" }],
        });
        assert.equal(status, 200, JSON.stringify(json));
        const message = json.choices[0].message;
        assert.equal(message.reasoning_content, FAKE_THINKING);
        assert.match(message.content, /^The local model answers/);
        assert.equal((router.ollama.requests.at(-1) as Json).think, true);
      },
    );

    await t.step("a stream shows the thinking as reasoning_content deltas before the answer", async () => {
      const chunks = await stream(router, {
        model: "qwen3:8b",
        reasoning_effort: "medium",
        messages: [{ role: "user", content: "why is the sky blue?" }],
      });
      assert.equal(deltas(chunks, "reasoning_content"), FAKE_THINKING);
      const firstReasoning = chunks.findIndex((c) => c.choices?.[0]?.delta?.reasoning_content);
      const firstContent = chunks.findIndex((c) => c.choices?.[0]?.delta?.content);
      assert.ok(firstReasoning !== -1 && firstReasoning < firstContent);
      assert.match(deltas(chunks, "content"), /^The local model answers/);
    });

    await t.step(
      "asking a model that cannot think to think is Ollama's 400, said to the client",
      async () => {
        const { status, json } = await post(router, {
          model: "llama3.2:1b",
          reasoning_effort: "high",
          messages: [{ role: "user", content: "hi" }],
        });
        assert.equal(status, 400, JSON.stringify(json));
        assert.match(json.error.message, /does not support thinking/);
      },
    );

    await t.step("reasoning_effort none asks the local model not to think", async () => {
      const { status, json } = await post(router, {
        model: "qwen3:8b",
        reasoning_effort: "none",
        messages: [{ role: "user", content: "hi" }],
      });
      assert.equal(status, 200, JSON.stringify(json));
      assert.equal(json.choices[0].message.reasoning_content, undefined);
      assert.equal((router.ollama.requests.at(-1) as Json).think, false);
    });

    await t.step("the same tool call in two turns gets two different ids", async () => {
      const body = {
        model: "qwen3:8b",
        tools: [WEATHER],
        messages: [{ role: "user", content: "weather in Paris?" }],
      };
      const first = await post(router, body);
      const second = await post(router, body);
      assert.equal(first.status, 200, JSON.stringify(first.json));
      const a = first.json.choices[0].message.tool_calls[0];
      const b = second.json.choices[0].message.tool_calls[0];
      assert.equal(a.function.arguments, b.function.arguments);
      assert.notEqual(a.id, b.id);
    });

    await t.step("parallel local tool calls in two answers all have ids of their own", async () => {
      router.ollama.mode = "parallel_tools";
      try {
        const ids: string[] = [];
        for (let turn = 0; turn < 2; turn++) {
          const chunks = await stream(router, {
            model: "qwen3:8b",
            tools: [WEATHER, TIME],
            messages: [{ role: "user", content: "weather and time in Paris?" }],
          });
          ids.push(
            ...chunks.flatMap((c) => c.choices?.[0]?.delta?.tool_calls ?? []).map((tc: Json) => tc.id)
              .filter(Boolean),
          );
        }
        assert.equal(ids.length, 4);
        assert.equal(new Set(ids).size, 4, `ids repeat: ${ids.join(", ")}`);
      } finally {
        router.ollama.mode = "normal";
      }
    });

    for (
      const [field, extra] of [
        ["tool_choice", { tool_choice: "required" }],
        ["parallel_tool_calls", { parallel_tool_calls: false }],
      ] as const
    ) {
      await t.step(
        `${
          JSON.stringify(extra)
        } with two tools that only the local model may serve is a 400 naming ${field}`,
        async () => {
          const before = router.ollama.requests.length;
          const { status, requestId, json } = await post(router, {
            routing_contract: LOCAL_ONLY,
            tools: [WEATHER, TIME],
            ...extra,
            messages: [{ role: "user", content: "weather in Paris?" }],
          });
          assert.equal(status, 400, JSON.stringify(json));
          assert.equal(json.error.code, "UNSUPPORTED_FIELD");
          assert.equal(json.error.param, field);
          assert.equal(router.ollama.requests.length, before, "Ollama was called");
          const record = await router.record(requestId);
          assert.equal(record.failure?.type, "validation_error");
          assert.equal(record.attempts.at(-1)?.error_code, "UNSUPPORTED_FIELD");
        },
      );
    }

    await t.step(
      'tool_choice "required" among two tools, a cloud provider allowed, is served by the cloud',
      async () => {
        const { status, requestId, json } = await post(router, {
          tools: [WEATHER, TIME],
          tool_choice: "required",
          messages: [{ role: "user", content: "weather in Paris?" }],
        });
        assert.equal(status, 200, JSON.stringify(json));
        assert.equal(json.choices[0].finish_reason, "tool_calls");
        const record = await router.record(requestId);
        assert.notEqual(record.decision.provider, "local");
        assert.deepEqual(
          record.attempts.map((a) => [a.provider, a.outcome, a.error_code]),
          [["local", "fallback", "UNSUPPORTED_FIELD"], [record.decision.provider, "ok", null]],
        );
      },
    );

    await t.step(
      "GET /v1/models dates local models by Ollama's modified_at and cloud ones by start",
      async () => {
        const response = await fetch(`${router.url}/v1/models`);
        const models: Json[] = (await response.json()).data;
        const local = models.find((m) => m.id === "qwen3:8b");
        assert.equal(local.created, Date.parse("2025-11-01T10:00:00Z") / 1000);
        const cloud = models.filter((m) => m.owned_by !== "local");
        assert.ok(cloud.length > 0);
        for (const m of cloud) {
          assert.ok(m.created > 1_700_000_000 && m.created <= Date.now() / 1000, JSON.stringify(m));
        }
      },
    );

    await t.step("an OpenAI refusal reaches the client as refusal, in JSON and in a stream", async () => {
      router.openai.mode = "refusal";
      try {
        const completion = await router.client.chat.completions.create({
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "something it refuses" }],
        });
        assert.equal(completion.choices[0].message.refusal, FAKE_REFUSAL);
        assert.equal(completion.choices[0].message.content, null);
        const chunks = await stream(router, {
          model: "gpt-4o-mini",
          messages: [{ role: "user", content: "something it refuses" }],
        });
        assert.equal(deltas(chunks, "refusal"), FAKE_REFUSAL);
      } finally {
        router.openai.mode = "normal";
      }
    });

    await t.step("OpenAI's cached and reasoning token counts reach the client", async () => {
      router.openai.mode = "usage_details";
      try {
        const { json } = await post(router, {
          routing_contract: OPENAI_ONLY,
          messages: [{ role: "user", content: "hi" }],
        });
        assert.equal(json.usage.prompt_tokens_details.cached_tokens, FAKE_USAGE_DETAILS.cached_tokens);
        assert.equal(
          json.usage.completion_tokens_details.reasoning_tokens,
          FAKE_USAGE_DETAILS.reasoning_tokens,
        );
        const chunks = await stream(router, {
          routing_contract: OPENAI_ONLY,
          stream_options: { include_usage: true },
          messages: [{ role: "user", content: "hi" }],
        });
        const usage = chunks.at(-1).usage;
        assert.equal(usage.prompt_tokens_details.cached_tokens, FAKE_USAGE_DETAILS.cached_tokens);
        assert.equal(usage.completion_tokens_details.reasoning_tokens, FAKE_USAGE_DETAILS.reasoning_tokens);
      } finally {
        router.openai.mode = "normal";
      }
    });

    await t.step("logprobs asked of OpenAI come back, in JSON and on each streamed piece", async () => {
      const body = {
        routing_contract: OPENAI_ONLY,
        logprobs: true,
        top_logprobs: 2,
        messages: [{ role: "user", content: "hi" }],
      };
      const { status, json } = await post(router, body);
      assert.equal(status, 200, JSON.stringify(json));
      const tokens: Json[] = json.choices[0].logprobs.content;
      assert.equal(tokens.map((t) => t.token).join(""), json.choices[0].message.content);
      assert.ok(tokens.every((t) => t.logprob === FAKE_LOGPROB));
      assert.equal((router.openai.requests.at(-1) as Json).top_logprobs, 2);
      const chunks = await stream(router, body);
      const pieces = chunks.filter((c) => c.choices?.[0]?.delta?.content);
      assert.ok(pieces.length > 0);
      for (const c of pieces) {
        assert.equal(c.choices[0].logprobs.content[0].token, c.choices[0].delta.content);
      }
    });
  } finally {
    await router.close();
  }
});
