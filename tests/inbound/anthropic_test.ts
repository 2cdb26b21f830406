import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import {
  anthropicErrorBody,
  anthropicMessagesRequestSchema,
  AnthropicStreamEncoder,
  fromAnthropicRequest,
  toAnthropicResponse,
} from "../../lib/inbound/anthropic/mod.ts";
import type { ChatRequest, ChatResult, StreamEvent } from "../../lib/canonical/mod.ts";
import type { ClientResponseMeta } from "../../lib/inbound/mod.ts";

const META: ClientResponseMeta = { id: "msg_0123abcd", created: 1764201600, model: "qwen3:8b" };
const USAGE = { prompt_tokens: 21, completion_tokens: 9, total_tokens: 30 };

/** What the tiny server answers, chosen by the request's model name. */
const SCENARIOS: Record<string, { result: ChatResult; events: StreamEvent[]; failAfter?: number }> = {
  text: {
    result: {
      model: "qwen3:8b",
      content: "Bonjour ✓ 🌍",
      tool_calls: [],
      finish_reason: "stop",
      usage: USAGE,
    },
    events: [
      { type: "text", text: "Bon" },
      { type: "text", text: "jour ✓ 🌍" },
      { type: "finish", finish_reason: "stop", usage: USAGE },
    ],
  },
  tool: {
    result: {
      model: "qwen3:8b",
      content: "Let me check",
      tool_calls: [{
        id: "call_1",
        type: "function",
        function: { name: "get_weather", arguments: '{"city":"Paris"}' },
      }],
      finish_reason: "tool_calls",
      usage: USAGE,
    },
    events: [
      { type: "text", text: "Let me " },
      { type: "text", text: "check" },
      { type: "tool_call_start", index: 0, id: "call_1", name: "get_weather" },
      { type: "tool_call_args", index: 0, fragment: '{"city":' },
      { type: "tool_call_args", index: 0, fragment: '"Paris"}' },
      { type: "finish", finish_reason: "tool_calls", usage: USAGE },
    ],
  },
  failing: {
    result: { model: "qwen3:8b", content: "", tool_calls: [], finish_reason: "stop", usage: USAGE },
    events: [{ type: "text", text: "partial" }],
    failAfter: 1,
  },
};

/** A stand-in for the router's `/v1/messages`: schema, translation in, encoder or JSON out. */
function startServer(seen: ChatRequest[], headers: Headers[]) {
  return Deno.serve({ hostname: "127.0.0.1", port: 0, onListen() {} }, async (req) => {
    headers.push(req.headers);
    const parsed = anthropicMessagesRequestSchema.safeParse(await req.json());
    if (!parsed.success) {
      const message = parsed.error.issues.map((i) => `${i.path.join(".")}: ${i.message}`).join("; ");
      return Response.json(
        anthropicErrorBody({ message, type: "invalid_request_error", code: "X", status: 400 }),
        {
          status: 400,
          headers: { "x-should-retry": "false" },
        },
      );
    }
    const request = fromAnthropicRequest(parsed.data);
    seen.push(request);
    const scenario = SCENARIOS[parsed.data.model];
    if (!request.stream) return Response.json(toAnthropicResponse(scenario.result, META));
    const encoder = new AnthropicStreamEncoder(META, { inputTokens: USAGE.prompt_tokens });
    const chunks = [encoder.start(), ...scenario.events.map((event) => encoder.encode(event))];
    chunks.push(
      scenario.failAfter === undefined
        ? encoder.done()
        : encoder.error({ message: "the local model crashed", type: "server_error", code: "X", status: 503 }),
    );
    return new Response(ReadableStream.from(chunks), {
      headers: { "content-type": "text/event-stream", "cache-control": "no-cache" },
    });
  });
}

const WEATHER_TOOL = {
  name: "get_weather",
  description: "current weather",
  input_schema: { type: "object" as const, properties: { city: { type: "string" } } },
};

Deno.test("the official anthropic sdk understands what the router sends", async (t) => {
  const seen: ChatRequest[] = [];
  const headers: Headers[] = [];
  const server = startServer(seen, headers);
  const client = new Anthropic({
    apiKey: "sk-ant-client",
    baseURL: `http://127.0.0.1:${server.addr.port}`,
    maxRetries: 0,
  });
  try {
    await t.step("messages.create returns the text answer with usage", async () => {
      const message = await client.messages.create({
        model: "text",
        max_tokens: 64,
        system: "be brief",
        messages: [{ role: "user", content: "hi" }],
      });
      assert.equal(message.id, META.id);
      assert.equal(message.model, "qwen3:8b");
      assert.deepEqual(message.content, [{ type: "text", text: "Bonjour ✓ 🌍" }]);
      assert.equal(message.stop_reason, "end_turn");
      assert.equal(message.usage.input_tokens, 21);
      assert.equal(message.usage.output_tokens, 9);
      assert.deepEqual(seen.at(-1)!.messages, [{ role: "system", content: "be brief" }, {
        role: "user",
        content: "hi",
      }]);
      // What the inbound endpoint must accept from this SDK generation: a bearer key and the new version.
      assert.equal(headers.at(-1)!.get("authorization"), "Bearer sk-ant-client");
      assert.equal(headers.at(-1)!.get("x-api-key"), null);
      assert.equal(headers.at(-1)!.get("anthropic-version"), "2026-10-21");
    });

    await t.step("messages.create returns a tool_use block with parsed input", async () => {
      const message = await client.messages.create({
        model: "tool",
        max_tokens: 64,
        tools: [WEATHER_TOOL],
        tool_choice: { type: "any" },
        messages: [{ role: "user", content: "weather?" }],
      });
      assert.equal(message.stop_reason, "tool_use");
      assert.deepEqual(message.content[1], {
        type: "tool_use",
        id: "call_1",
        name: "get_weather",
        input: { city: "Paris" },
      });
      assert.equal(seen.at(-1)!.tool_choice, "required");
    });

    await t.step(
      "the sdk's usual follow-up (its own answer echoed back, then a tool_result) is understood",
      async () => {
        const question = { role: "user" as const, content: "weather?" };
        const first = await client.messages.create({
          model: "tool",
          max_tokens: 64,
          tools: [WEATHER_TOOL],
          messages: [question],
        });
        await client.messages.create({
          model: "text",
          max_tokens: 64,
          tools: [WEATHER_TOOL],
          messages: [
            question,
            { role: "assistant", content: first.content },
            { role: "user", content: [{ type: "tool_result", tool_use_id: "call_1", content: "21C" }] },
          ],
        });
        const messages = seen.at(-1)!.messages;
        assert.deepEqual(messages.at(-2), {
          role: "assistant",
          content: "Let me check",
          tool_calls: [{
            id: "call_1",
            type: "function",
            function: { name: "get_weather", arguments: '{"city":"Paris"}' },
          }],
        });
        assert.deepEqual(messages.at(-1), { role: "tool", tool_call_id: "call_1", content: "21C" });
      },
    );

    await t.step("messages.stream(...).finalMessage() assembles streamed text", async () => {
      const stream = client.messages.stream({
        model: "text",
        max_tokens: 64,
        messages: [{ role: "user", content: "hi" }],
      });
      const texts: string[] = [];
      stream.on("text", (text) => texts.push(text));
      const message = await stream.finalMessage();
      assert.deepEqual(texts, ["Bon", "jour ✓ 🌍"]);
      assert.deepEqual(message.content, [{ type: "text", text: "Bonjour ✓ 🌍" }]);
      assert.equal(message.stop_reason, "end_turn");
      assert.equal(message.usage.input_tokens, 21);
      assert.equal(message.usage.output_tokens, 9);
    });

    await t.step("messages.stream(...).finalMessage() assembles text and a tool_use", async () => {
      const message = await client.messages.stream({
        model: "tool",
        max_tokens: 64,
        tools: [WEATHER_TOOL],
        messages: [{ role: "user", content: "weather?" }],
      }).finalMessage();
      assert.equal(message.stop_reason, "tool_use");
      assert.equal(message.content.length, 2);
      assert.equal(message.content[0].type === "text" && message.content[0].text, "Let me check");
      const tool = message.content[1];
      assert.equal(tool.type, "tool_use");
      assert.equal(tool.type === "tool_use" && tool.id, "call_1");
      assert.deepEqual(tool.type === "tool_use" && tool.input, { city: "Paris" });
    });

    await t.step("an error ending makes finalMessage() reject", async () => {
      const stream = client.messages.stream({
        model: "failing",
        max_tokens: 64,
        messages: [{ role: "user", content: "hi" }],
      });
      await assert.rejects(stream.finalMessage(), (error: unknown) => {
        assert.ok(error instanceof Anthropic.APIError, String(error));
        assert.match(String((error as Error).message), /the local model crashed/);
        return true;
      });
    });

    await t.step("a request our schema refuses is an anthropic-shaped 400 the sdk raises", async () => {
      await assert.rejects(
        client.messages.create({
          model: "text",
          max_tokens: 64,
          tools: [{ ...WEATHER_TOOL, name: "get weather" }],
          messages: [{ role: "user", content: "hi" }],
        }),
        (error: unknown) => {
          assert.ok(error instanceof Anthropic.BadRequestError, String(error));
          assert.match(String((error as Error).message), /tools\.0\.name/);
          return true;
        },
      );
    });
  } finally {
    await server.shutdown();
  }
});
