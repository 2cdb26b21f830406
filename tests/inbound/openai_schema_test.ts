import assert from "node:assert/strict";
import { canonicalJson } from "../../lib/edr/mod.ts";
import {
  admitChatFields,
  chatRequestSchema,
  parseChatBody,
  withoutNullFields,
} from "../../lib/inbound/openai/mod.ts";
import { InboundError } from "../../lib/inbound/mod.ts";

function parse(body: Record<string, unknown>) {
  return chatRequestSchema.safeParse(withoutNullFields(body));
}

const richBody = {
  model: "auto",
  messages: [
    { role: "system", content: "Be brief." },
    {
      role: "user",
      content: [
        { type: "text", text: "What is in this image?" },
        { type: "image_url", image_url: { url: "data:image/png;base64,AAAA", detail: "low" } },
      ],
    },
    {
      role: "assistant",
      tool_calls: [{ id: "call_1", type: "function", function: { name: "lookup", arguments: '{"q":"x"}' } }],
    },
    { role: "tool", tool_call_id: "call_1", content: "found" },
  ],
  tools: [{
    type: "function",
    function: { name: "lookup", description: "Looks up", parameters: { properties: {}, type: "object" } },
  }],
  tool_choice: { type: "function", function: { name: "lookup" } },
  response_format: { type: "json_schema", json_schema: { name: "answer", schema: { type: "object" } } },
  temperature: 0.2,
  top_p: 0.9,
  seed: 7,
  stop: ["\n\n"],
  max_completion_tokens: 64,
  stream: true,
  stream_options: { include_usage: true },
  user: "u1",
};

Deno.test("chat request schema", async (t) => {
  await t.step("null settings, as SDKs send them, read as not set", () => {
    const result = parse({
      messages: [{ role: "user", content: "hi" }],
      temperature: null,
      top_p: null,
      n: null,
      stop: null,
      seed: null,
      max_tokens: null,
      max_completion_tokens: null,
      presence_penalty: null,
      frequency_penalty: null,
      stream: null,
      stream_options: null,
      tools: [{ type: "function", function: { name: "f", strict: null } }],
      response_format: { type: "json_schema", json_schema: { name: "a", strict: null } },
    });
    assert.ok(result.success, JSON.stringify(!result.success && result.error.issues));
    assert.deepEqual(result.data, {
      messages: [{ content: "hi", role: "user" }],
      response_format: { json_schema: { name: "a" }, type: "json_schema" },
      tools: [{ function: { name: "f" }, type: "function" }],
    });
  });

  await t.step("the caller's body is left as it was", () => {
    const body = { messages: [{ role: "user", content: "hi" }], temperature: null };
    parse(body);
    assert.deepEqual(body, { messages: [{ role: "user", content: "hi" }], temperature: null });
  });

  await t.step("an assistant turn without content reads as content null", () => {
    const result = parse(richBody);
    assert.ok(result.success);
    assert.equal(result.data.messages[2].content, null);
  });

  await t.step("a parsed request is already in RFC 8785 member order", () => {
    // The input hash relies on this to take JSON.stringify instead of re-sorting every object.
    const result = parse(richBody);
    assert.ok(result.success);
    assert.equal(JSON.stringify(result.data), canonicalJson(result.data));
    const minimal = parse({ model: "m", messages: [{ role: "user", content: "hi" }] });
    assert.ok(minimal.success);
    assert.equal(JSON.stringify(minimal.data), canonicalJson(minimal.data));
  });

  await t.step("a bad setting is rejected at its own path", () => {
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ temperature: 3 }, "temperature"],
      [{ stop: ["a", "b", "c", "d", "e"] }, "stop"],
      [{ stream: "yes" }, "stream"],
      [{ tools: [{ type: "function", function: { name: "bad name" } }] }, "tools.0.function.name"],
      [{ tools: [{ type: "function", function: { name: "f", strict: "no" } }] }, "tools.0.function.strict"],
    ];
    for (const [extra, path] of cases) {
      const result = parse({ messages: [{ role: "user", content: "hi" }], ...extra });
      assert.ok(!result.success, `${path} should be rejected`);
      assert.equal(result.error.issues[0].path.join("."), path);
    }
  });

  await t.step("client names and stop strings longer than 256 characters are rejected at their path", () => {
    const long = "x".repeat(257);
    const cases: Array<[Record<string, unknown>, string]> = [
      [{ model: long }, "model"],
      [{ user: long }, "user"],
      [{ stop: long }, "stop"],
      [{ stop: ["ok", long] }, "stop.1"],
    ];
    for (const [extra, path] of cases) {
      const result = parse({ messages: [{ role: "user", content: "hi" }], ...extra });
      assert.ok(!result.success, `${path} should be rejected`);
      assert.equal(result.error.issues[0].path.join("."), path);
      assert.match(result.error.issues[0].message, /256 characters/);
    }
  });

  await t.step("the longest accepted values still parse", () => {
    const max = "x".repeat(256);
    const result = parse({
      model: max,
      user: max,
      stop: [max, max, max, max],
      messages: [{ role: "user", content: "hi" }],
    });
    assert.ok(result.success, JSON.stringify(!result.success && result.error.issues));
  });
});

Deno.test("OpenAI fields are carried, refused by name, or routed, never dropped", async (t) => {
  const base = { model: "auto", messages: [{ role: "user", content: "hi" }] };
  const refusal = (body: Record<string, unknown>) => {
    try {
      admitChatFields(body);
    } catch (error) {
      assert.ok(error instanceof InboundError);
      return error;
    }
    assert.fail("expected a refusal");
  };

  await t.step("OpenAI-only settings reach the canonical request as sent", () => {
    const fields = {
      logit_bias: { "50256": -100 },
      logprobs: true,
      metadata: { team: "a" },
      modalities: ["text"],
      prediction: { type: "content", content: "draft" },
      prompt_cache_key: "k1",
      reasoning_effort: "low",
      safety_identifier: "u-1",
      service_tier: "flex",
      store: true,
      top_logprobs: 3,
      verbosity: "low",
    };
    const parsed = chatRequestSchema.safeParse(admitChatFields({ ...base, ...fields }));
    assert.ok(parsed.success);
    for (const [key, value] of Object.entries(fields)) {
      assert.deepEqual((parsed.data as Record<string, unknown>)[key], value, key);
    }
  });

  await t.step(
    "audio, legacy functions, web search and unknown fields are a 400 UNSUPPORTED_FIELD naming them",
    () => {
      for (const field of ["audio", "functions", "function_call", "web_search_options", "frobnicate"]) {
        const error = refusal({ ...base, [field]: { x: 1 } });
        assert.equal(error.status, 400);
        assert.equal(error.code, "UNSUPPORTED_FIELD");
        assert.equal(error.param, field);
        assert.match(error.message, new RegExp(`^${field} `));
      }
    },
  );

  await t.step("an unknown field's name reaches the client but not the record", () => {
    const error = refusal({ ...base, secret_note: 1 });
    assert.match(error.message, /secret_note/);
    assert.doesNotMatch(error.recordedMessage, /secret_note/);
    const prose = refusal({ ...base, "my password is hunter2": 1 });
    assert.equal(prose.param, null);
    assert.doesNotMatch(prose.message, /hunter2/);
  });

  await t.step("n above 1 and an audio modality are refused by name; their defaults pass", () => {
    assert.equal(refusal({ ...base, n: 2 }).param, "n");
    assert.equal(refusal({ ...base, modalities: ["text", "audio"] }).param, "modalities");
    assert.ok(chatRequestSchema.safeParse(admitChatFields({ ...base, n: 1, modalities: ["text"] })).success);
  });

  await t.step("top_logprobs without logprobs is a 400 saying to send both", () => {
    const error = refusal({ ...base, top_logprobs: 2 });
    assert.equal(error.code, "INVALID_REQUEST");
    assert.equal(error.param, "top_logprobs");
  });

  await t.step("null for a refused or OpenAI-only field reads as not set", () => {
    const body = admitChatFields({ ...base, audio: null, functions: null, logprobs: null, store: null });
    assert.deepEqual(Object.keys(body).sort(), ["messages", "model"]);
  });
});

Deno.test("members inside messages, parts and tools are carried, echoes left out, anything else refused by path", async (t) => {
  const user = { role: "user", content: "hi" };
  const call = { id: "call_1", type: "function", function: { name: "lookup", arguments: "{}" } };
  const refusal = (body: Record<string, unknown>) => {
    try {
      parseChatBody(body);
    } catch (error) {
      if (error instanceof InboundError) return error;
      throw error;
    }
    assert.fail("the body was accepted");
  };

  await t.step("an unknown member anywhere inside is a 400 UNSUPPORTED_FIELD whose param is its path", () => {
    const cases: [Record<string, unknown>, string][] = [
      [
        { messages: [user, { role: "assistant", content: "x", audio: { id: "audio_1" } }] },
        "messages[1].audio",
      ],
      [
        { messages: [{ role: "user", content: [{ type: "text", text: "x", cache_control: {} }] }] },
        "messages[0].content[0].cache_control",
      ],
      [{
        messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "u", fidelity: 1 } }] }],
      }, "messages[0].content[0].image_url.fidelity"],
      [{
        messages: [user, {
          role: "assistant",
          content: null,
          tool_calls: [{ ...call, function: { ...call.function, strict: true } }],
        }],
      }, "messages[1].tool_calls[0].function.strict"],
      [
        { messages: [{ role: "tool", tool_call_id: "c", content: "x", is_error: true }] },
        "messages[0].is_error",
      ],
      [
        { messages: [user], tools: [{ type: "function", function: { name: "f" }, cache_control: {} }] },
        "tools[0].cache_control",
      ],
      [
        { messages: [user], tools: [{ type: "function", function: { name: "f", examples: [] } }] },
        "tools[0].function.examples",
      ],
      [
        { messages: [user], stream_options: { include_usage: true, chunk_size: 4 } },
        "stream_options.chunk_size",
      ],
      [{ messages: [user], response_format: { type: "json_object", schema: {} } }, "response_format.schema"],
      [
        { messages: [user], tool_choice: { type: "function", function: { name: "f", strict: true } } },
        "tool_choice.function.strict",
      ],
    ];
    for (const [body, path] of cases) {
      const error = refusal(body);
      assert.equal(error.status, 400, path);
      assert.equal(error.code, "UNSUPPORTED_FIELD", path);
      assert.equal(error.param, path);
      assert.ok(error.message.startsWith(`${path} is not a member`), error.message);
    }
  });

  await t.step("the member's name reaches the client, never the record, and prose is not named", () => {
    const error = refusal({ messages: [user, { role: "assistant", content: "x", secret_note: 1 }] });
    assert.match(error.message, /secret_note/);
    assert.doesNotMatch(error.recordedMessage, /secret_note/);
    assert.match(error.recordedMessage, /^messages\[1\] has a member/);
    const prose = refusal({ messages: [{ role: "user", content: "x", "my password is hunter2": 1 }] });
    assert.equal(prose.param, "messages[0]");
    assert.doesNotMatch(prose.message, /hunter2/);
  });

  await t.step("what SDKs echo from an answer is accepted and left out of the request", () => {
    const parsed = parseChatBody({
      messages: [user, {
        role: "assistant",
        content: "x",
        refusal: null,
        annotations: [],
        audio: null,
        function_call: null,
        reasoning_content: "thought about it",
        tool_calls: [{ ...call, index: 0 }],
      }, { role: "tool", tool_call_id: "call_1", content: "found" }],
      stream: true,
      stream_options: { include_usage: true, include_obfuscation: false },
    });
    assert.ok(parsed.success);
    assert.deepEqual(parsed.data.messages[1], { content: "x", role: "assistant", tool_calls: [call] });
    assert.deepEqual(parsed.data.stream_options, { include_usage: true });
  });

  await t.step("an answer without calls echoed with tool_calls: null reads as no calls", () => {
    const parsed = parseChatBody({
      messages: [user, { role: "assistant", content: "x", refusal: null, tool_calls: null }, user],
    });
    assert.ok(parsed.success, JSON.stringify(!parsed.success && parsed.error.issues));
    assert.deepEqual(parsed.data.messages[1], { content: "x", role: "assistant" });
  });

  await t.step("an echoed member with a value that means something is refused by path", () => {
    const refusedEcho = refusal({
      messages: [user, { role: "assistant", content: null, refusal: "I can't" }],
    });
    assert.equal(refusedEcho.param, "messages[1].refusal");
    assert.equal(
      refusal({ messages: [{ role: "user", content: "x", refusal: null }] }).param,
      "messages[0].refusal",
    );
    assert.equal(
      refusal({ messages: [user], stream_options: { include_obfuscation: true } }).param,
      "stream_options.include_obfuscation",
    );
  });

  await t.step("a body without unknown members parses as before, json_schema.description carried", () => {
    const format = { type: "json_schema", json_schema: { description: "an answer", name: "a", schema: {} } };
    const parsed = parseChatBody({ messages: [user], response_format: format });
    assert.ok(parsed.success);
    assert.deepEqual(parsed.data.response_format, format);
  });
});
