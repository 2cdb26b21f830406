/**
 * Anthropic both ways, through `deno task serve` as users run it: the official Anthropic SDK on
 * `/v1/messages` served by (the fake) Anthropic gets its own request passed through and Anthropic's
 * answer back field for field; OpenAI clients served by Anthropic get what Anthropic cannot honour
 * refused by name (or served elsewhere), never silently changed.
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { APIError } from "openai";
import { FAKE_CACHE_USAGE, FAKE_THINKING, type FakeAnthropicMode } from "../fakes/fake_anthropic.ts";
import { FAKE_THINKING as FAKE_OLLAMA_THINKING } from "../fakes/fake_ollama.ts";
import { type ServedRouter, startServe } from "./serve_harness.ts";
import { BUILTIN_POLICY_SOURCE, decide, parsePolicy } from "../../lib/contract/mod.ts";
import type { EdrRecord } from "../../lib/edr/mod.ts";

type Json = Record<string, unknown>;

const ANTHROPIC_ONLY = { "x-routing-contract": JSON.stringify({ provider_allowlist: ["anthropic"] }) };
const ANTHROPIC_THEN_OPENAI = {
  "x-routing-contract": JSON.stringify({ provider_allowlist: ["anthropic", "openai"] }),
};

function lastAnthropicBody(h: ServedRouter): Json {
  return h.anthropic.requests.at(-1)!.body as Json;
}

/** Runs `run` with the fake Anthropic in `mode`, then puts it back to normal. */
async function withAnthropicMode<T>(
  h: ServedRouter,
  mode: FakeAnthropicMode,
  run: () => Promise<T>,
): Promise<T> {
  h.anthropic.mode = mode;
  try {
    return await run();
  } finally {
    h.anthropic.mode = "normal";
  }
}

/** An Anthropic SDK request with extended thinking on. */
const THINKING_PARAMS = {
  model: "auto",
  max_tokens: 2048,
  thinking: { type: "enabled" as const, budget_tokens: 1024 },
  messages: [{ role: "user" as const, content: "think" }],
};

/** The `data` of each event of an SSE body, parsed. */
async function sseEvents(response: Response): Promise<Json[]> {
  const text = await response.text();
  return text.split("\n\n").flatMap((event) => {
    const data = event.split("\n").find((line) => line.startsWith("data: "));
    return data ? [JSON.parse(data.slice(6)) as Json] : [];
  });
}

Deno.test("the Anthropic SDK served by Anthropic gets its own request through and Anthropic's answer back", async (t) => {
  const h = await startServe({ only: "anthropic" });
  const client = new Anthropic({
    baseURL: h.url,
    apiKey: "x",
    maxRetries: 0,
    defaultHeaders: ANTHROPIC_ONLY,
  });
  try {
    await t.step(
      "cache_control, top_k, system blocks, eager_input_streaming and is_error reach Anthropic as sent",
      async () => {
        const tool = {
          name: "get_weather",
          description: "weather",
          input_schema: { type: "object" as const, properties: { city: { type: "string" } } },
          cache_control: { type: "ephemeral" as const },
          eager_input_streaming: true,
        };
        const system = [
          { type: "text" as const, text: "You are terse." },
          {
            type: "text" as const,
            text: "A long shared prefix.",
            cache_control: { type: "ephemeral" as const },
          },
        ];
        const messages: Anthropic.MessageParam[] = [
          { role: "user", content: "weather in Paris?" },
          {
            role: "assistant",
            content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }],
          },
          {
            role: "user",
            content: [{
              type: "tool_result",
              tool_use_id: "toolu_1",
              content: "service down",
              is_error: true,
            }],
          },
        ];
        // deno-lint-ignore no-explicit-any
        const params: any = { model: "auto", max_tokens: 64, top_k: 5, system, tools: [tool], messages };
        const message = await client.messages.create(params);
        assert.equal(message.type, "message");
        const sent = lastAnthropicBody(h);
        assert.deepEqual(sent.system, system, "system blocks, with cache_control, not joined");
        assert.equal(sent.top_k, 5);
        assert.deepEqual(sent.tools, [tool]);
        const results = (sent.messages as { content: Json[] }[])[2].content;
        assert.deepEqual(results, [{
          type: "tool_result",
          tool_use_id: "toolu_1",
          content: "service down",
          is_error: true,
        }]);
        assert.equal(sent.model, "claude-sonnet-4-5", "the candidate's model replaces auto");
      },
    );

    await t.step("text blocks carry no citations: null, and request-id is the EDR's request id", async () => {
      const { data, response, request_id } = await client.messages
        .create({ model: "auto", max_tokens: 64, messages: [{ role: "user", content: "hello" }] })
        .withResponse();
      const raw = await (await fetch(`${h.url}/v1/messages`, {
        method: "POST",
        headers: { "content-type": "application/json", ...ANTHROPIC_ONLY },
        body: JSON.stringify({ model: "auto", max_tokens: 64, messages: [{ role: "user", content: "hi" }] }),
      })).json();
      assert.deepEqual(Object.keys(raw.content[0]).sort(), ["text", "type"]);
      assert.equal(data.content[0].type, "text");
      const requestId = response.headers.get("request-id");
      assert.ok(requestId?.startsWith("req_"));
      assert.equal(request_id, requestId, "the SDK's request id");
      assert.equal(response.headers.get("x-request-id"), requestId);
      assert.equal((await h.record(requestId!)).request_id, requestId);
    });

    await t.step(
      "a matched stop sequence stays stop_sequence with its value, JSON and streamed",
      async () => {
        const params = {
          model: "auto",
          max_tokens: 64,
          stop_sequences: ["Voilà"],
          messages: [{ role: "user" as const, content: "hi" }],
        };
        const message = await client.messages.create(params);
        assert.equal(message.stop_reason, "stop_sequence");
        assert.equal(message.stop_sequence, "Voilà");
        const streamed = await client.messages.stream(params).finalMessage();
        assert.equal(streamed.stop_reason, "stop_sequence");
        assert.equal(streamed.stop_sequence, "Voilà");
      },
    );

    await t.step("pause_turn stays pause_turn (and refusal stays refusal), JSON and streamed", async () => {
      const params = { model: "auto", max_tokens: 64, messages: [{ role: "user" as const, content: "hi" }] };
      for (const mode of ["pause_turn", "refusal"] as const) {
        await withAnthropicMode(h, mode, async () => {
          assert.equal((await client.messages.create(params)).stop_reason, mode);
          assert.equal((await client.messages.stream(params).finalMessage()).stop_reason, mode);
        });
      }
    });

    await t.step(
      "cache counts come back apart, and a stream's message_start has Anthropic's exact input_tokens",
      async () => {
        await withAnthropicMode(h, "cache_usage", async () => {
          const body = {
            model: "auto",
            max_tokens: 64,
            messages: [{ role: "user", content: "a question of some length" }],
          };
          const message = await client.messages.create(body as Anthropic.MessageCreateParamsNonStreaming);
          assert.equal(
            message.usage.cache_creation_input_tokens,
            FAKE_CACHE_USAGE.cache_creation_input_tokens,
          );
          assert.equal(message.usage.cache_read_input_tokens, FAKE_CACHE_USAGE.cache_read_input_tokens);
          const exactInput = message.usage.input_tokens;
          const response = await fetch(`${h.url}/v1/messages`, {
            method: "POST",
            headers: { "content-type": "application/json", ...ANTHROPIC_ONLY },
            body: JSON.stringify({ ...body, stream: true }),
          });
          const events = await sseEvents(response);
          const start = events[0] as { type: string; message: { usage: Json } };
          assert.equal(start.type, "message_start");
          assert.deepEqual(start.message.usage, {
            input_tokens: exactInput,
            ...FAKE_CACHE_USAGE,
            output_tokens: 0,
          }, "the upstream's own counts, not the router's estimate");
        });
      },
    );

    await t.step("Anthropic's thinking comes back as a thinking block, JSON and streamed", async () => {
      await withAnthropicMode(h, "thinking", async () => {
        const message = await client.messages.create(THINKING_PARAMS);
        assert.equal(message.content[0].type, "thinking");
        assert.equal((message.content[0] as Anthropic.ThinkingBlock).thinking, FAKE_THINKING);
        assert.deepEqual(lastAnthropicBody(h).thinking, THINKING_PARAMS.thinking);
        const streamed = await client.messages.stream(THINKING_PARAMS).finalMessage();
        assert.equal((streamed.content[0] as Anthropic.ThinkingBlock).thinking, FAKE_THINKING);
        for (const answer of [message, streamed]) {
          assert.equal(
            (answer.content[0] as Anthropic.ThinkingBlock).signature,
            "sig-fake",
            "Anthropic's signature",
          );
        }
      });
    });

    await t.step(
      "a signed thinking block sent back in a tool loop reaches Anthropic with its signature",
      async () => {
        await withAnthropicMode(h, "thinking", async () => {
          const first = await client.messages.stream(THINKING_PARAMS).finalMessage();
          await client.messages.create({
            ...THINKING_PARAMS,
            messages: [
              ...THINKING_PARAMS.messages,
              { role: "assistant", content: first.content as Anthropic.ContentBlockParam[] },
              { role: "user", content: "go on" },
            ],
          });
          const sent = (lastAnthropicBody(h).messages as { content: Json[] }[])[1].content[0];
          assert.deepEqual(sent, { type: "thinking", thinking: FAKE_THINKING, signature: "sig-fake" });
        });
      },
    );

    await t.step("output_config structured output is accepted and reaches Anthropic", async () => {
      const output_config = {
        format: {
          type: "json_schema",
          schema: { type: "object", properties: { answer: { type: "string" } } },
        },
      };
      // deno-lint-ignore no-explicit-any
      const params: any = {
        model: "auto",
        max_tokens: 64,
        output_config,
        messages: [{ role: "user", content: "json" }],
      };
      const message = await client.messages.create(params);
      const text = (message.content[0] as Anthropic.TextBlock).text;
      assert.equal(typeof JSON.parse(text), "object");
      assert.deepEqual(lastAnthropicBody(h).output_config, output_config);
    });

    await t.step("an error names its reason in error.code and x-hi-reason, with request-id", async () => {
      const error = await client.messages
        .create(
          {
            model: "auto",
            max_tokens: 64,
            messages: [{ role: "user", content: "hi" }],
            bogus: 1,
          } as unknown as Anthropic.MessageCreateParamsNonStreaming,
        )
        .catch((e) => e);
      assert.ok(error instanceof Anthropic.APIError);
      assert.equal(error.status, 400);
      const body = error.error as { error: { type: string; code: string; param?: string } };
      assert.equal(body.error.type, "invalid_request_error");
      assert.equal(body.error.code, "UNSUPPORTED_FIELD");
      assert.equal(body.error.param, "bogus");
      assert.equal(error.headers?.get("x-hi-reason"), "UNSUPPORTED_FIELD");
      assert.equal(error.requestID, error.headers?.get("x-request-id"));
    });
  } finally {
    await h.close();
  }
});

/** decide() run again on what the record says it read (as replay does; cloud replay is REFUSED by default). */
function redecide(record: EdrRecord) {
  const { health, slot, features, keys } = record.decision_inputs;
  const d = decide(
    {
      contract: record.effective_contract,
      policy: parsePolicy(BUILTIN_POLICY_SOURCE),
      health,
      slot,
      features,
      keys,
    } as Parameters<typeof decide>[0],
  );
  return { candidates: d.candidates, factors: d.factors, constraints: d.constraints };
}

Deno.test("OpenAI clients and Anthropic: what it cannot honour goes elsewhere or is refused by name, and its rewrites are recorded", async (t) => {
  const h = await startServe();
  try {
    await t.step(
      "seed with only Anthropic allowed is a 400 naming seed, and no provider is called",
      async () => {
        const before = h.anthropic.requests.length;
        const error = await h.client.chat.completions.create(
          { model: "auto", messages: [{ role: "user", content: "hi" }], seed: 7 },
          { headers: ANTHROPIC_ONLY },
        ).catch((e) => e);
        assert.ok(error instanceof APIError, `expected APIError, got ${error}`);
        assert.equal(error.status, 400);
        assert.equal(error.code, "UNSUPPORTED_FIELD");
        assert.equal(error.param, "seed");
        assert.equal(error.headers?.get("x-hi-reason"), "UNSUPPORTED_FIELD");
        assert.equal(h.anthropic.requests.length, before);
        const record = await h.record(error.headers!.get("x-request-id")!);
        assert.deepEqual(record.attempts, []);
        assert.ok(record.constraints_applied.includes("field_unsupported:anthropic:seed"));
      },
    );

    await t.step(
      "seed and temperature 1.5 with Anthropic allowed first are served by OpenAI as sent, and the EDR names them",
      async () => {
        const { data, response } = await h.client.chat.completions.create(
          { model: "auto", messages: [{ role: "user", content: "hi" }], seed: 7, temperature: 1.5 },
          { headers: ANTHROPIC_THEN_OPENAI },
        ).withResponse();
        assert.equal(data.choices[0].finish_reason, "stop");
        const sent = h.openai.requests.at(-1) as Json;
        assert.equal(sent.seed, 7);
        assert.equal(sent.temperature, 1.5);
        const record = await h.record(response.headers.get("x-request-id")!);
        assert.deepEqual(record.attempts.map((a) => [a.provider, a.outcome]), [["openai", "ok"]]);
        assert.deepEqual(record.decision_inputs.features?.provider_fields, ["seed", "temperature"]);
        assert.ok(record.constraints_applied.includes("field_unsupported:anthropic:seed,temperature"));
      },
    );

    await t.step(
      "a presence penalty goes to OpenAI; top_p beside temperature with only Anthropic is a 400",
      async () => {
        const { response } = await h.client.chat.completions.create(
          { model: "auto", messages: [{ role: "user", content: "hi" }], presence_penalty: 0.5 },
          { headers: ANTHROPIC_THEN_OPENAI },
        ).withResponse();
        const record = await h.record(response.headers.get("x-request-id")!);
        assert.deepEqual(record.attempts.map((a) => a.provider), ["openai"]);
        assert.ok(record.constraints_applied.includes("field_unsupported:anthropic:presence_penalty"));
        const error = await h.client.chat.completions.create(
          { model: "auto", messages: [{ role: "user", content: "hi" }], temperature: 0.5, top_p: 0.9 },
          { headers: ANTHROPIC_ONLY },
        ).catch((e) => e);
        assert.ok(error instanceof APIError);
        assert.equal(error.status, 400);
        assert.equal(error.param, "top_p");
      },
    );

    await t.step(
      "a system message after the conversation started reaches Anthropic hoisted, and the EDR says so",
      async () => {
        const { response } = await h.client.chat.completions.create({
          model: "auto",
          messages: [
            { role: "system", content: "Be terse." },
            { role: "user", content: "hi" },
            { role: "assistant", content: "hello" },
            { role: "system", content: "Now answer in French." },
            { role: "user", content: "how are you?" },
          ],
        }, { headers: ANTHROPIC_ONLY }).withResponse();
        const body = lastAnthropicBody(h);
        assert.deepEqual(body.system, [
          { type: "text", text: "Be terse." },
          { type: "text", text: "Now answer in French." },
        ]);
        assert.deepEqual((body.messages as Json[]).map((m) => m.role), ["user", "assistant", "user"]);
        const record = await h.record(response.headers.get("x-request-id")!);
        assert.equal(record.decision_inputs.features?.has_late_system, true);
        assert.ok(
          record.decision_factors.includes("REWRITE_SYSTEM_HOISTED"),
          record.decision_factors.join(" "),
        );
        assert.deepEqual(redecide(record), {
          candidates: record.candidates,
          factors: record.decision_factors,
          constraints: record.constraints_applied,
        });
      },
    );

    await t.step(
      "a history that opens with the assistant gets one (continue) user turn, recorded",
      async () => {
        const { response } = await h.client.chat.completions.create({
          model: "auto",
          messages: [{ role: "assistant", content: "How can I help?" }, { role: "user", content: "hi" }],
        }, { headers: ANTHROPIC_ONLY }).withResponse();
        assert.deepEqual((lastAnthropicBody(h).messages as Json[])[0], {
          role: "user",
          content: [{ type: "text", text: "(continue)" }],
        });
        const record = await h.record(response.headers.get("x-request-id")!);
        assert.ok(record.decision_factors.includes("REWRITE_FIRST_TURN_USER"));
        assert.deepEqual(redecide(record).factors, record.decision_factors);
      },
    );
  } finally {
    await h.close();
  }
});

Deno.test("the Anthropic SDK served by the local model gets thinking blocks and structured output", async (t) => {
  const h = await startServe({ only: "anthropic" });
  const local = { "x-routing-contract": JSON.stringify({ provider_allowlist: ["local"] }) };
  const client = new Anthropic({ baseURL: h.url, apiKey: "x", maxRetries: 0, defaultHeaders: local });
  const params = {
    model: "auto",
    max_tokens: 2048,
    thinking: { type: "enabled" as const, budget_tokens: 1024 },
    messages: [{ role: "user" as const, content: "think first" }],
  };
  try {
    let answer: Anthropic.Message | null = null;
    await t.step(
      "the local model's reasoning is a thinking block before the text, JSON and streamed",
      async () => {
        answer = await client.messages.create(params);
        assert.deepEqual(answer.content.map((b) => b.type), ["thinking", "text"]);
        assert.equal((answer.content[0] as Anthropic.ThinkingBlock).thinking, FAKE_OLLAMA_THINKING);
        const streamed = await client.messages.stream(params).finalMessage();
        assert.deepEqual(streamed.content.map((b) => b.type), ["thinking", "text"]);
        assert.equal((streamed.content[0] as Anthropic.ThinkingBlock).thinking, FAKE_OLLAMA_THINKING);
      },
    );

    await t.step(
      "that unsigned thinking block, sent back to Anthropic in the history, is left out",
      async () => {
        assert.ok(answer);
        const message = await client.messages.create({
          ...params,
          messages: [
            ...params.messages,
            { role: "assistant", content: answer.content as Anthropic.ContentBlockParam[] },
            { role: "user", content: "and now?" },
          ],
        }, { headers: ANTHROPIC_ONLY });
        assert.equal(message.type, "message");
        const turns = lastAnthropicBody(h).messages as { content: { type: string }[] }[];
        assert.deepEqual(turns[1].content.map((b) => b.type), ["text"]);
      },
    );

    await t.step("output_config's JSON Schema makes the local model answer JSON", async () => {
      const output_config = { format: { type: "json_schema", schema: { type: "object" } } };
      const message = await client.messages.create(
        {
          model: "auto",
          max_tokens: 64,
          output_config,
          messages: [{ role: "user", content: "json" }],
        } as unknown as Anthropic.MessageCreateParamsNonStreaming,
      );
      const text = (message.content[0] as Anthropic.TextBlock).text;
      assert.equal(typeof JSON.parse(text), "object");
    });
  } finally {
    await h.close();
  }
});
