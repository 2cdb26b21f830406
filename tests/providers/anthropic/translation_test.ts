/**
 * The outbound Anthropic translation: canonical requests to Messages bodies and answers back (streams and
 * error statuses: stream_test.ts).
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { anthropicJsonMode, toAnthropicRequest } from "../../../lib/providers/anthropic/mod.ts";
import { fromAnthropicResponse, fromAnthropicStopReason } from "../../../lib/providers/anthropic/mod.ts";
import {
  type AnthropicMessagesRequest,
  anthropicMessagesRequestSchema,
  fromAnthropicRequest,
} from "../../../lib/inbound/anthropic/mod.ts";
import type { ChatMessage, ChatRequest } from "../../../lib/canonical/mod.ts";
import { UpstreamError } from "../../../lib/providers/types.ts";

const OPTS = { model: "claude-x", defaultMaxTokens: 1024, stream: false };
const PNG = "iVBORw0KGgo=";
const req = (messages: ChatMessage[], extra: Partial<ChatRequest> = {}): ChatRequest => ({
  messages,
  ...extra,
});
const hi: ChatMessage = { role: "user", content: "hi" };

Deno.test("openai request becomes an anthropic request", async (t) => {
  const rows: {
    name: string;
    request: ChatRequest;
    expect: Partial<AnthropicMessagesRequest>;
    absent?: string[];
  }[] = [
    {
      name: "system and developer messages before the conversation become system blocks, in order",
      request: req([
        { role: "system", content: "be brief" },
        { role: "developer", content: [{ type: "text", text: "use french" }] },
        hi,
      ]),
      expect: {
        system: [{ type: "text", text: "be brief" }, { type: "text", text: "use french" }],
        messages: [{ role: "user", content: [{ type: "text", text: "hi" }] }],
      },
    },
    { name: "no instructions means no system field", request: req([hi]), expect: {}, absent: ["system"] },
    {
      name: "consecutive user messages become one turn",
      request: req([hi, { role: "user", content: "there" }]),
      expect: {
        messages: [{
          role: "user",
          content: [{ type: "text", text: "hi" }, { type: "text", text: "there" }],
        }],
      },
    },
    {
      name: "data-url, jpg and http images become base64 and url sources",
      request: req([{
        role: "user",
        content: [
          { type: "text", text: "look" },
          { type: "image_url", image_url: { url: `data:image/png;base64,${PNG}` } },
          { type: "image_url", image_url: { url: `data:image/jpg;base64,${PNG}` } },
          { type: "image_url", image_url: { url: "https://example.test/cat.webp", detail: "low" } },
        ],
      }]),
      expect: {
        messages: [{
          role: "user",
          content: [
            { type: "text", text: "look" },
            { type: "image", source: { type: "base64", media_type: "image/png", data: PNG } },
            { type: "image", source: { type: "base64", media_type: "image/jpeg", data: PNG } },
            { type: "image", source: { type: "url", url: "https://example.test/cat.webp" } },
          ],
        }],
      },
    },
    {
      name: "assistant tool calls become tool_use blocks and tool messages one grouped tool_result turn",
      request: req([
        hi,
        {
          role: "assistant",
          content: null,
          tool_calls: [
            {
              id: "call_1",
              type: "function",
              function: { name: "get_weather", arguments: '{"city":"Paris"}' },
            },
            { id: "call_2", type: "function", function: { name: "get_time", arguments: "" } },
          ],
        },
        { role: "tool", tool_call_id: "call_1", content: '{"temp":21}' },
        { role: "tool", tool_call_id: "call_2", content: [{ type: "text", text: "12:00" }] },
      ]),
      expect: {
        messages: [
          { role: "user", content: [{ type: "text", text: "hi" }] },
          {
            role: "assistant",
            content: [
              { type: "tool_use", id: "call_1", name: "get_weather", input: { city: "Paris" } },
              { type: "tool_use", id: "call_2", name: "get_time", input: {} },
            ],
          },
          {
            role: "user",
            content: [
              { type: "tool_result", tool_use_id: "call_1", content: '{"temp":21}' },
              { type: "tool_result", tool_use_id: "call_2", content: "12:00" },
            ],
          },
        ],
      },
    },
    {
      name: "tool results go before other content of their turn",
      request: req([
        hi,
        {
          role: "assistant",
          content: "checking",
          tool_calls: [{ id: "c1", type: "function", function: { name: "f", arguments: "{}" } }],
        },
        { role: "user", content: "and hurry" },
        { role: "tool", tool_call_id: "c1", content: "ok" },
      ]),
      expect: {
        messages: [
          { role: "user", content: [{ type: "text", text: "hi" }] },
          {
            role: "assistant",
            content: [{ type: "text", text: "checking" }, {
              type: "tool_use",
              id: "c1",
              name: "f",
              input: {},
            }],
          },
          {
            role: "user",
            content: [{ type: "tool_result", tool_use_id: "c1", content: "ok" }, {
              type: "text",
              text: "and hurry",
            }],
          },
        ],
      },
    },
    {
      name: "tools become input_schema tools, with an object schema when none is given",
      request: req([hi], {
        tools: [
          {
            type: "function",
            function: {
              name: "get_weather",
              description: "weather",
              parameters: { type: "object", properties: {} },
            },
          },
          { type: "function", function: { name: "ping" } },
        ],
      }),
      expect: {
        tools: [
          { name: "get_weather", description: "weather", input_schema: { type: "object", properties: {} } },
          { name: "ping", input_schema: { type: "object" } },
        ],
      },
      absent: ["tool_choice"],
    },
    ...([
      ["auto", { type: "auto" }],
      ["none", { type: "none" }],
      ["required", { type: "any" }],
      [{ type: "function", function: { name: "f" } }, { type: "tool", name: "f" }],
    ] as const).map(([choice, expected]) => ({
      name: `tool_choice ${JSON.stringify(choice)} maps to ${expected.type}`,
      request: req([hi], { tools: [{ type: "function", function: { name: "f" } }], tool_choice: choice }),
      expect: { tool_choice: expected } as Partial<AnthropicMessagesRequest>,
    })),
    {
      name: "parallel_tool_calls false disables parallel tool use",
      request: req([hi], {
        tools: [{ type: "function", function: { name: "f" } }],
        tool_choice: "required",
        parallel_tool_calls: false,
      }),
      expect: { tool_choice: { type: "any", disable_parallel_tool_use: true } },
    },
    {
      name: "parallel_tool_calls false without a choice still says so",
      request: req([hi], {
        tools: [{ type: "function", function: { name: "f" } }],
        parallel_tool_calls: false,
      }),
      expect: { tool_choice: { type: "auto", disable_parallel_tool_use: true } },
    },
    {
      name: "max_completion_tokens wins over max_tokens",
      request: req([hi], { max_tokens: 50, max_completion_tokens: 70 }),
      expect: { max_tokens: 70 },
    },
    {
      name: "max_tokens is used when alone",
      request: req([hi], { max_tokens: 50 }),
      expect: { max_tokens: 50 },
    },
    {
      name: "the policy default fills a missing max_tokens",
      request: req([hi]),
      expect: { max_tokens: 1024 },
    },
    {
      name: "a stop string becomes a one-item stop_sequences",
      request: req([hi], { stop: "END" }),
      expect: { stop_sequences: ["END"] },
    },
    {
      name: "stop arrays pass through",
      request: req([hi], { stop: ["a", "b"] }),
      expect: { stop_sequences: ["a", "b"] },
    },
    {
      name: "temperature 1 passes as is",
      request: req([hi], { temperature: 1 }),
      expect: { temperature: 1 },
    },
    { name: "top_p alone passes", request: req([hi], { top_p: 0.9 }), expect: { top_p: 0.9 } },
    {
      name: "top_p 1 beside temperature changes nothing and is not sent",
      request: req([hi], { temperature: 0.2, top_p: 1 }),
      expect: { temperature: 0.2 },
      absent: ["top_p"],
    },
    {
      name: "user becomes metadata.user_id",
      request: req([hi], { user: "u-42" }),
      expect: { metadata: { user_id: "u-42" } },
    },
    {
      name: "penalties of 0 and stream_options change nothing and are not sent",
      request: req([hi], {
        presence_penalty: 0,
        frequency_penalty: 0,
        stream_options: { include_usage: true },
      }),
      expect: {},
      absent: ["seed", "presence_penalty", "frequency_penalty", "stream_options"],
    },
    {
      name: "json_object adds a json instruction block after the system prompt",
      request: req([{ role: "system", content: "sys" }, hi], { response_format: { type: "json_object" } }),
      expect: {
        system: [
          { type: "text", text: "sys" },
          {
            type: "text",
            text: "Respond with a single JSON object only: no prose before or after it and no code fences.",
          },
        ],
      },
    },
    { name: "stream asks for SSE only when streaming", request: req([hi]), expect: {}, absent: ["stream"] },
  ];
  for (const row of rows) {
    await t.step(row.name, () => {
      const body = toAnthropicRequest(row.request, OPTS);
      for (const [key, value] of Object.entries(row.expect)) {
        assert.deepEqual((body as unknown as Record<string, unknown>)[key], value, key);
      }
      for (const key of row.absent ?? []) assert.equal(key in body, false, `${key} must be absent`);
      assert.equal(body.model, "claude-x");
      // What we send is always a request our own inbound schema (Anthropic's shape) accepts.
      anthropicMessagesRequestSchema.parse(body);
    });
  }

  await t.step(
    "json_schema puts the schema in the instruction and says json is instructed, not enforced",
    () => {
      const request = req([hi], {
        response_format: {
          type: "json_schema",
          json_schema: { name: "answer", schema: { type: "object", required: ["n"] } },
        },
      });
      const body = toAnthropicRequest(request, OPTS);
      const system = JSON.stringify(body.system);
      assert.match(system, /single JSON object only/);
      assert.match(system, /\{\\"type\\":\\"object\\",\\"required\\":\[\\"n\\"\]\}/);
      assert.equal(anthropicJsonMode(request), "instructed");
      assert.equal(anthropicJsonMode(req([hi])), "none");
      assert.equal(anthropicJsonMode(req([hi], { response_format: { type: "text" } })), "none");
    },
  );

  await t.step("streaming requests carry stream true", () => {
    assert.equal(toAnthropicRequest(req([hi]), { ...OPTS, stream: true }).stream, true);
  });
});

Deno.test("requests anthropic cannot express are refused with a 400 that says why", async (t) => {
  const rows: { name: string; request: ChatRequest; code: string; param: string; message: RegExp }[] = [
    {
      name: "malformed tool arguments name the call",
      request: req([hi, {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_9", type: "function", function: { name: "f", arguments: "{city:" } }],
      }, { role: "tool", tool_call_id: "call_9", content: "x" }]),
      code: "INVALID_TOOL_ARGUMENTS",
      param: "messages",
      message: /call_9 \(f\)/,
    },
    {
      name: "tool arguments that are a json array are refused",
      request: req([hi, {
        role: "assistant",
        content: null,
        tool_calls: [{ id: "call_8", type: "function", function: { name: "f", arguments: "[1]" } }],
      }]),
      code: "INVALID_TOOL_ARGUMENTS",
      param: "messages",
      message: /call_8/,
    },
    {
      name: "n above 1",
      request: req([hi], { n: 2 }),
      code: "UNSUPPORTED_PARAMETER",
      param: "n",
      message: /n = 1/,
    },
    {
      name: "an image type anthropic does not take",
      request: req([{
        role: "user",
        content: [{ type: "image_url", image_url: { url: `data:image/bmp;base64,${PNG}` } }],
      }]),
      code: "UNSUPPORTED_IMAGE",
      param: "messages",
      message: /image\/bmp/,
    },
    {
      name: "an image URL that is neither http(s) nor a data URL",
      request: req([{ role: "user", content: [{ type: "image_url", image_url: { url: "ftp://x/y.png" } }] }]),
      code: "UNSUPPORTED_IMAGE",
      param: "messages",
      message: /http\(s\)/,
    },
    {
      name: "a conversation with nothing to say",
      request: req([{ role: "system", content: "sys" }, { role: "user", content: "" }]),
      code: "INVALID_REQUEST",
      param: "messages",
      message: /non-empty user message/,
    },
  ];
  for (const row of rows) {
    await t.step(row.name, () => {
      assert.throws(() => toAnthropicRequest(row.request, OPTS), (error: unknown) => {
        assert.ok(error instanceof UpstreamError);
        assert.equal(error.status, 400);
        assert.equal(error.code, row.code);
        assert.equal(error.type, "invalid_request_error");
        assert.equal(error.fallback, false);
        assert.equal(error.param, row.param);
        assert.match(error.message, row.message);
        return true;
      });
    });
  }
});

Deno.test("anthropic answers become canonical results", async (t) => {
  await t.step(
    "text blocks are joined, thinking is reasoning, and usage adds cache tokens to the prompt",
    () => {
      const result = fromAnthropicResponse({
        id: "msg_1",
        model: "claude-x",
        content: [{ type: "text", text: "Hel" }, { type: "thinking", thinking: "hmm" }, {
          type: "text",
          text: "lo",
        }],
        stop_reason: "end_turn",
        usage: {
          input_tokens: 10,
          output_tokens: 5,
          cache_creation_input_tokens: 3,
          cache_read_input_tokens: 2,
        },
      });
      assert.deepEqual(result, {
        upstream_id: "msg_1",
        model: "claude-x",
        content: "Hello",
        tool_calls: [],
        finish_reason: "stop",
        usage: { prompt_tokens: 15, completion_tokens: 5, total_tokens: 20 },
        reasoning: "hmm",
        usage_details: { cache_creation_tokens: 3, cached_tokens: 2 },
      });
    },
  );

  await t.step("tool_use blocks become tool calls with string arguments and the block id", () => {
    const result = fromAnthropicResponse({
      model: "claude-x",
      content: [{ type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } }],
      stop_reason: "tool_use",
      usage: { input_tokens: 1, output_tokens: 2 },
    });
    assert.equal(result.content, null);
    assert.deepEqual(result.tool_calls, [
      { id: "toolu_1", type: "function", function: { name: "get_weather", arguments: '{"city":"Paris"}' } },
    ]);
    assert.equal(result.finish_reason, "tool_calls");
  });

  const stops: [string | null, string][] = [
    ["end_turn", "stop"],
    ["stop_sequence", "stop"],
    ["pause_turn", "stop"],
    ["max_tokens", "length"],
    ["tool_use", "tool_calls"],
    ["refusal", "content_filter"],
    [null, "stop"],
  ];
  for (const [reason, finish] of stops) {
    await t.step(`stop_reason ${reason} is finish_reason ${finish}`, () => {
      assert.equal(fromAnthropicStopReason(reason), finish);
    });
  }
});

type Item =
  | { kind: "user"; text: string }
  | { kind: "assistant"; text: string }
  | { kind: "call"; id: string; name: string; args: unknown }
  | { kind: "result"; id: string; content: string };

/** What a conversation means, independent of how turns are split or merged. */
function meaning(messages: ChatMessage[]): { system: string; items: Item[] } {
  const system: string[] = [];
  const items: Item[] = [];
  const texts = (content: ChatMessage["content"]): string[] =>
    content === null
      ? []
      : typeof content === "string"
      ? (content === "" ? [] : [content])
      : content.flatMap((p) => p.type === "text" && p.text !== "" ? [p.text] : []);
  for (const m of messages) {
    if (m.role === "system" || m.role === "developer") system.push(...texts(m.content));
    else if (m.role === "user") {
      items.push(...texts(m.content).map((text) => ({ kind: "user" as const, text })));
    } else if (m.role === "assistant") {
      items.push(...texts(m.content).map((text) => ({ kind: "assistant" as const, text })));
      for (const c of m.tool_calls ?? []) {
        items.push({
          kind: "call",
          id: c.id,
          name: c.function.name,
          args: JSON.parse(c.function.arguments || "{}"),
        });
      }
    } else if (m.role === "tool") {
      items.push({ kind: "result", id: m.tool_call_id, content: texts(m.content).join("") });
    }
  }
  return { system: system.join("\n\n"), items };
}

function roundTrip(request: ChatRequest): ChatRequest {
  return fromAnthropicRequest(anthropicMessagesRequestSchema.parse(toAnthropicRequest(request, OPTS)));
}

Deno.test("openai to anthropic to openai keeps the conversation's meaning", async (t) => {
  await t.step("system, turns, tool calls with parsed arguments and tool results survive", () => {
    const messages: ChatMessage[] = [
      { role: "system", content: "be brief" },
      { role: "developer", content: "answer in french" },
      { role: "user", content: "weather in Paris and the time?" },
      {
        role: "assistant",
        content: "checking",
        tool_calls: [
          {
            id: "call_1",
            type: "function",
            function: { name: "get_weather", arguments: '{ "city" : "Paris" }' },
          },
          {
            id: "call_2",
            type: "function",
            function: { name: "get_time", arguments: '{"tz":"CET","n":[1,2]}' },
          },
        ],
      },
      { role: "tool", tool_call_id: "call_1", content: '{"temp":21}' },
      { role: "tool", tool_call_id: "call_2", content: "12:00" },
      { role: "assistant", content: "Il fait 21 degrés, il est midi." },
      { role: "user", content: "merci" },
    ];
    const back = roundTrip({ messages, max_tokens: 64, temperature: 0.3, stop: ["X"] });
    assert.deepEqual(meaning(back.messages), meaning(messages));
    assert.equal(back.max_tokens, 64);
    assert.equal(back.temperature, 0.3);
    assert.deepEqual(back.stop, ["X"]);
  });

  await t.step("random conversations keep their meaning (property)", () => {
    const text = fc.string({ minLength: 1, maxLength: 12 });
    const args = fc.dictionary(
      fc.string({ minLength: 1, maxLength: 5 }),
      fc.oneof(fc.integer(), fc.string(), fc.boolean()),
      {
        maxKeys: 3,
      },
    );
    const round = fc.tuple(
      text,
      fc.option(fc.array(fc.tuple(text, args), { minLength: 1, maxLength: 3 }), { nil: null }),
      text,
    );
    fc.assert(
      fc.property(
        fc.option(text, { nil: null }),
        fc.array(round, { minLength: 1, maxLength: 4 }),
        (sys, rounds) => {
          const messages: ChatMessage[] = sys === null ? [] : [{ role: "system", content: sys }];
          let n = 0;
          for (const [question, calls, answer] of rounds) {
            messages.push({ role: "user", content: question });
            if (calls !== null) {
              const toolCalls = calls.map(([, a]) => ({
                id: `call_${n++}`,
                type: "function" as const,
                function: { name: "tool_x", arguments: JSON.stringify(a) },
              }));
              messages.push({ role: "assistant", content: null, tool_calls: toolCalls });
              calls.forEach(([result], i) =>
                messages.push({ role: "tool", tool_call_id: toolCalls[i].id, content: result })
              );
            }
            messages.push({ role: "assistant", content: answer });
          }
          assert.deepEqual(meaning(roundTrip({ messages }).messages), meaning(messages));
        },
      ),
      { numRuns: 200 },
    );
  });
});
