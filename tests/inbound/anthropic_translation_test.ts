/** The inbound Anthropic dialect: Messages bodies to canonical requests, canonical answers to messages and SSE. */
import assert from "node:assert/strict";
import {
  anthropicErrorBody,
  type AnthropicMessagesRequest,
  anthropicMessagesRequestSchema,
  AnthropicStreamEncoder,
  fromAnthropicRequest,
  toAnthropicResponse,
} from "../../lib/inbound/anthropic/mod.ts";
import { parseSse, type SseEvent } from "../../lib/providers/sse.ts";
import type { ChatRequest, ChatResult } from "../../lib/canonical/mod.ts";

const PNG = "iVBORw0KGgo=";

function inbound(body: Record<string, unknown>): AnthropicMessagesRequest {
  return anthropicMessagesRequestSchema.parse({ model: "m", max_tokens: 100, ...body });
}

Deno.test("inbound anthropic requests become canonical requests", async (t) => {
  const rows: { name: string; body: Record<string, unknown>; expect: Partial<ChatRequest> }[] = [
    {
      name: "a system string becomes a system message and max_tokens carries over",
      body: { system: "be brief", messages: [{ role: "user", content: "hi" }] },
      expect: {
        model: "m",
        max_tokens: 100,
        messages: [{ role: "system", content: "be brief" }, { role: "user", content: "hi" }],
      },
    },
    {
      name: "system blocks become system messages in order",
      body: {
        system: [{ type: "text", text: "a" }, { type: "text", text: "b" }],
        messages: [{ role: "user", content: "hi" }],
      },
      expect: {
        messages: [{ role: "system", content: "a" }, { role: "system", content: "b" }, {
          role: "user",
          content: "hi",
        }],
      },
    },
    {
      name: "tool_use becomes assistant tool calls and tool_result tool messages before the turn's text",
      body: {
        messages: [
          { role: "user", content: "weather?" },
          {
            role: "assistant",
            content: [
              { type: "text", text: "checking" },
              { type: "tool_use", id: "toolu_1", name: "get_weather", input: { city: "Paris" } },
            ],
          },
          {
            role: "user",
            content: [
              { type: "tool_result", tool_use_id: "toolu_1", content: "21C" },
              { type: "text", text: "thanks" },
            ],
          },
        ],
      },
      expect: {
        messages: [
          { role: "user", content: "weather?" },
          {
            role: "assistant",
            content: "checking",
            tool_calls: [{
              id: "toolu_1",
              type: "function",
              function: { name: "get_weather", arguments: '{"city":"Paris"}' },
            }],
          },
          { role: "tool", tool_call_id: "toolu_1", content: "21C" },
          { role: "user", content: "thanks" },
        ],
      },
    },
    {
      name: "a failed tool result says so in the tool message",
      body: {
        messages: [
          { role: "user", content: "go" },
          { role: "assistant", content: [{ type: "tool_use", id: "t1", name: "f", input: {} }] },
          {
            role: "user",
            content: [{ type: "tool_result", tool_use_id: "t1", content: "timeout", is_error: true }],
          },
        ],
      },
      expect: {
        messages: [
          { role: "user", content: "go" },
          {
            role: "assistant",
            content: null,
            tool_calls: [{ id: "t1", type: "function", function: { name: "f", arguments: "{}" } }],
          },
          { role: "tool", tool_call_id: "t1", content: "Error: timeout" },
        ],
      },
    },
    {
      name: "images become image_url parts with data URLs",
      body: {
        messages: [{
          role: "user",
          content: [
            { type: "text", text: "look" },
            { type: "image", source: { type: "base64", media_type: "image/png", data: PNG } },
            { type: "image", source: { type: "url", url: "https://example.test/a.png" } },
          ],
        }],
      },
      expect: {
        messages: [{
          role: "user",
          content: [
            { type: "text", text: "look" },
            { type: "image_url", image_url: { url: `data:image/png;base64,${PNG}` } },
            { type: "image_url", image_url: { url: "https://example.test/a.png" } },
          ],
        }],
      },
    },
    {
      name: "tools, tool_choice any, disabled parallel use, stop sequences and sampling carry over",
      body: {
        messages: [{ role: "user", content: "hi" }],
        tools: [{
          name: "f",
          description: "d",
          input_schema: { type: "object", properties: { a: { type: "string" } } },
        }],
        tool_choice: { type: "any", disable_parallel_tool_use: true },
        stop_sequences: ["END"],
        temperature: 0.5,
        top_p: 0.8,
        top_k: 5,
        stream: true,
        metadata: { user_id: "u1" },
      },
      expect: {
        tools: [{
          type: "function",
          function: {
            name: "f",
            description: "d",
            parameters: { type: "object", properties: { a: { type: "string" } } },
          },
        }],
        tool_choice: "required",
        parallel_tool_calls: false,
        stop: ["END"],
        temperature: 0.5,
        top_p: 0.8,
        stream: true,
        user: "u1",
      },
    },
    {
      name: "tool_choice tool names the function",
      body: {
        messages: [{ role: "user", content: "hi" }],
        tools: [{ name: "f", input_schema: { type: "object" } }],
        tool_choice: { type: "tool", name: "f" },
      },
      expect: { tool_choice: { type: "function", function: { name: "f" } } },
    },
    ...(["auto", "none"] as const).map((type) => ({
      name: `tool_choice ${type} stays ${type}`,
      body: {
        messages: [{ role: "user", content: "hi" }],
        tools: [{ name: "f", input_schema: { type: "object" } }],
        tool_choice: { type },
      },
      expect: { tool_choice: type } as Partial<ChatRequest>,
    })),
  ];
  for (const row of rows) {
    await t.step(row.name, () => {
      const request = fromAnthropicRequest(inbound(row.body));
      for (const [key, value] of Object.entries(row.expect)) {
        assert.deepEqual(request[key as keyof ChatRequest], value, key);
      }
      assert.equal(request.top_k, (row.body as { top_k?: number }).top_k, "top_k is carried when sent");
    });
  }
});

Deno.test("the inbound schema rejects what anthropic rejects", async (t) => {
  const ok = { model: "m", max_tokens: 10, messages: [{ role: "user", content: "hi" }] };
  const rows: { name: string; body: Record<string, unknown>; path: string }[] = [
    { name: "a missing max_tokens", body: { model: "m", messages: ok.messages }, path: "max_tokens" },
    { name: "max_tokens of zero", body: { ...ok, max_tokens: 0 }, path: "max_tokens" },
    {
      name: "a system role inside messages",
      body: { ...ok, messages: [{ role: "system", content: "x" }] },
      path: "messages.0.role",
    },
    { name: "temperature above 1", body: { ...ok, temperature: 1.5 }, path: "temperature" },
    {
      name: "a tool name with spaces",
      body: { ...ok, tools: [{ name: "get weather", input_schema: { type: "object" } }] },
      path: "tools.0.name",
    },
    {
      name: "tool_use in a user turn",
      body: {
        ...ok,
        messages: [{ role: "user", content: [{ type: "tool_use", id: "a", name: "f", input: {} }] }],
      },
      path: "messages.0.content",
    },
    {
      name: "an image media type anthropic does not take",
      body: {
        ...ok,
        messages: [{
          role: "user",
          content: [{ type: "image", source: { type: "base64", media_type: "image/bmp", data: "x" } }],
        }],
      },
      path: "messages.0.content",
    },
    {
      name: "the router's extension fields when not stripped",
      body: { ...ok, routing_contract: {} },
      path: "",
    },
    { name: "empty messages", body: { ...ok, messages: [] }, path: "messages" },
  ];
  for (const row of rows) {
    await t.step(row.name, () => {
      const result = anthropicMessagesRequestSchema.safeParse(row.body);
      assert.equal(result.success, false);
      const paths = result.error!.issues.map((issue) => issue.path.join("."));
      assert.ok(paths.some((p) => p.startsWith(row.path)), `${paths.join(", ")} should name ${row.path}`);
    });
  }
  await t.step("a well-formed request parses", () => {
    assert.equal(anthropicMessagesRequestSchema.safeParse(ok).success, true);
  });
});

const META = { id: "msg_abc", created: 1764201600, model: "qwen3:8b" };
const usage = { prompt_tokens: 12, completion_tokens: 7, total_tokens: 19 };

Deno.test("canonical results become anthropic messages", async (t) => {
  await t.step("text and tool calls become blocks with parsed input and the call id", () => {
    const result: ChatResult = {
      model: "qwen3:8b",
      content: "checking",
      tool_calls: [{
        id: "call_1",
        type: "function",
        function: { name: "get_weather", arguments: '{"city":"Paris"}' },
      }],
      finish_reason: "tool_calls",
      usage,
    };
    assert.deepEqual(toAnthropicResponse(result, META), {
      id: "msg_abc",
      type: "message",
      role: "assistant",
      model: "qwen3:8b",
      content: [
        { type: "text", text: "checking" },
        { type: "tool_use", id: "call_1", name: "get_weather", input: { city: "Paris" } },
      ],
      stop_reason: "tool_use",
      stop_sequence: null,
      usage: {
        input_tokens: 12,
        cache_creation_input_tokens: 0,
        cache_read_input_tokens: 0,
        output_tokens: 7,
      },
    });
  });

  await t.step("arguments that are not a json object are handed over raw, not dropped", () => {
    const result: ChatResult = {
      model: "m",
      content: null,
      tool_calls: [{ id: "c", type: "function", function: { name: "f", arguments: "{oops" } }],
      finish_reason: "tool_calls",
      usage,
    };
    const message = toAnthropicResponse(result, META) as { content: unknown[] };
    assert.deepEqual(message.content, [{
      type: "tool_use",
      id: "c",
      name: "f",
      input: { _raw_arguments: "{oops" },
    }]);
  });

  const stops = [["stop", "end_turn"], ["length", "max_tokens"], ["tool_calls", "tool_use"], [
    "content_filter",
    "refusal",
  ]] as const;
  for (const [finish, reason] of stops) {
    await t.step(`finish_reason ${finish} is stop_reason ${reason}`, () => {
      const message = toAnthropicResponse(
        { model: "m", content: "x", tool_calls: [], finish_reason: finish, usage },
        META,
      );
      assert.equal(message.stop_reason, reason);
    });
  }
});

async function decode(chunks: Uint8Array[]): Promise<SseEvent[]> {
  const events: SseEvent[] = [];
  for await (const event of parseSse(ReadableStream.from(chunks))) events.push(event);
  return events;
}

Deno.test("canonical stream events become anthropic SSE", async (t) => {
  await t.step(
    "text then two tool calls: blocks open and close in order with shared block indexes",
    async () => {
      const encoder = new AnthropicStreamEncoder(META, { inputTokens: 12 });
      const chunks = [
        encoder.start(),
        encoder.encode({ type: "text", text: "Hel" }),
        encoder.encode({ type: "text", text: "lo" }),
        encoder.encode({ type: "tool_call_start", index: 0, id: "call_1", name: "f" }),
        encoder.encode({ type: "tool_call_args", index: 0, fragment: '{"a":' }),
        encoder.encode({ type: "tool_call_args", index: 0, fragment: "1}" }),
        encoder.encode({ type: "tool_call_start", index: 1, id: "call_2", name: "g" }),
        encoder.encode({ type: "tool_call_args", index: 1, fragment: "{}" }),
        encoder.encode({ type: "finish", finish_reason: "tool_calls", usage }),
        encoder.done(),
      ];
      const events = await decode(chunks);
      for (const event of events) assert.equal(JSON.parse(event.data).type, event.event);
      const summary = events.map((e) => {
        const d = JSON.parse(e.data);
        return [
          e.event,
          d.index ?? null,
          d.delta?.text ?? d.delta?.partial_json ?? d.content_block?.type ?? null,
        ];
      });
      assert.deepEqual(summary, [
        ["message_start", null, null],
        ["content_block_start", 0, "text"],
        ["content_block_delta", 0, "Hel"],
        ["content_block_delta", 0, "lo"],
        ["content_block_stop", 0, null],
        ["content_block_start", 1, "tool_use"],
        ["content_block_delta", 1, '{"a":'],
        ["content_block_delta", 1, "1}"],
        ["content_block_stop", 1, null],
        ["content_block_start", 2, "tool_use"],
        ["content_block_delta", 2, "{}"],
        ["content_block_stop", 2, null],
        ["message_delta", null, null],
        ["message_stop", null, null],
      ]);
      const start = JSON.parse(events[0].data);
      assert.equal(start.message.id, "msg_abc");
      assert.equal(start.message.usage.input_tokens, 12);
      const messageDelta = JSON.parse(events[12].data);
      assert.deepEqual(messageDelta.delta, { stop_reason: "tool_use", stop_sequence: null });
      assert.equal(messageDelta.usage.output_tokens, 7);
    },
  );

  await t.step("the error ending is an anthropic error event", async () => {
    const encoder = new AnthropicStreamEncoder(META);
    const events = await decode([
      encoder.start(),
      encoder.error({ message: "ollama failed mid-stream", type: "server_error", code: "X", status: 503 }),
    ]);
    // Nothing of the answer went out, so the stream is the error event alone.
    assert.equal(events.length, 1);
    assert.equal(events[0].event, "error");
    assert.deepEqual(JSON.parse(events[0].data), {
      type: "error",
      error: { type: "api_error", message: "ollama failed mid-stream", code: "X" },
    });
  });

  const errorTypes: [number, string][] = [
    [400, "invalid_request_error"],
    [401, "authentication_error"],
    [403, "permission_error"],
    [404, "not_found_error"],
    [413, "request_too_large"],
    [429, "rate_limit_error"],
    [500, "api_error"],
    [502, "api_error"],
    [503, "api_error"],
    [504, "api_error"],
    [529, "overloaded_error"],
    [422, "invalid_request_error"],
  ];
  for (const [status, type] of errorTypes) {
    await t.step(`a ${status} error body has type ${type} and our reason code`, () => {
      assert.deepEqual(anthropicErrorBody({ message: "m", type: "x", code: "C", status }), {
        type: "error",
        error: { type, message: "m", code: "C" },
      });
    });
  }
});
