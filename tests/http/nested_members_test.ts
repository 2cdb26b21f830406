/**
 * Members inside messages, content parts and tools follow the rule of docs/protocols.md: what SDKs echo
 * from an answer (`ECHOED_MEMBERS`) is accepted and left out; any other unknown member is a 400
 * `UNSUPPORTED_FIELD` whose `param` is its JSON path, with one EDR and no provider called, on both
 * dialects, through `deno task serve`.
 */
import assert from "node:assert/strict";
import { ECHOED_MEMBERS } from "../../lib/inbound/openai/mod.ts";
import { startServe } from "../e2e/serve_harness.ts";

const DOC = await Deno.readTextFile(new URL("../../docs/protocols.md", import.meta.url));

Deno.test("docs/protocols.md lists every member accepted and left out, and no other", () => {
  const start = DOC.indexOf("\n## Members inside messages, parts and tools");
  assert.ok(start >= 0, 'docs/protocols.md has no "## Members inside messages, parts and tools" section');
  const section = DOC.slice(start, DOC.indexOf("\n## ", start + 1));
  const listed = new Set<string>();
  for (const line of section.split("\n")) {
    const cells = line.split("|").map((cell) => cell.trim());
    const object = cells[1];
    for (const [, member] of (cells[2] ?? "").matchAll(/`([a-z_]+)`/g)) listed.add(`${object}: ${member}`);
  }
  const known = Object.entries(ECHOED_MEMBERS).flatMap(([object, members]) =>
    Object.keys(members).map((member) => `${object}: ${member}`)
  );
  assert.deepEqual([...listed].sort(), known.sort());
});

Deno.test("unknown members inside a request are refused by path; echoes are accepted", async (t) => {
  const router = await startServe();
  const upstreamCalls = () =>
    router.ollama.requests.length + router.openai.requests.length + router.anthropic.requests.length;
  const post = async (path: string, body: Record<string, unknown>) => {
    const response = await fetch(`${router.url}${path}`, {
      method: "POST",
      headers: { "content-type": "application/json", "anthropic-version": "2023-06-01" },
      body: JSON.stringify(body),
    });
    return {
      status: response.status,
      requestId: response.headers.get("x-request-id") ?? "",
      body: await response.json(),
    };
  };
  /** The 400 a client sees, the single EDR it left, and that no provider was called. */
  const assertRefused = async (path: string, body: Record<string, unknown>, param: string) => {
    const before = upstreamCalls();
    const answer = await post(path, body);
    assert.equal(answer.status, 400, JSON.stringify(answer.body));
    assert.equal(answer.body.error.type, "invalid_request_error");
    assert.equal(answer.body.error.code, "UNSUPPORTED_FIELD");
    assert.equal(answer.body.error.param, param);
    assert.ok(answer.body.error.message.startsWith(`${param} is not a member`), answer.body.error.message);
    assert.equal(upstreamCalls(), before);
    const records = (await router.records()).filter((r) => r.request_id === answer.requestId);
    assert.equal(records.length, 1);
    assert.equal(records[0].failure?.code, "UNSUPPORTED_FIELD");
    assert.ok(!JSON.stringify(records[0]).includes("frobnicate"), "the record holds no member name");
  };
  const user = { role: "user", content: "hello there" };
  try {
    await t.step(
      "chat completions: a member no API defines inside a message part is named by its path",
      () =>
        assertRefused("/v1/chat/completions", {
          model: "auto",
          messages: [{ role: "user", content: [{ type: "text", text: "hi", frobnicate: true }] }],
        }, "messages[0].content[0].frobnicate"),
    );

    await t.step(
      "chat completions: an echoed audio reference on an assistant turn is refused by path",
      () =>
        assertRefused("/v1/chat/completions", {
          model: "auto",
          messages: [user, { role: "assistant", content: "hi", audio: { id: "audio_1" } }, user],
        }, "messages[1].audio"),
    );

    await t.step(
      "chat completions: an unknown member of a tool is named by its path",
      () =>
        assertRefused("/v1/chat/completions", {
          model: "auto",
          messages: [user],
          tools: [{ type: "function", function: { name: "lookup", frobnicate: 1 } }],
        }, "tools[0].function.frobnicate"),
    );

    await t.step(
      "messages: an unknown member inside a block is named by its path",
      () =>
        assertRefused("/v1/messages", {
          model: "auto",
          max_tokens: 16,
          messages: [{ role: "user", content: [{ type: "text", text: "hi", frobnicate: true }] }],
        }, "messages[0].content[0].frobnicate"),
    );

    await t.step(
      "messages: an unknown member of a tool is named by its path",
      () =>
        assertRefused("/v1/messages", {
          model: "auto",
          max_tokens: 16,
          messages: [user],
          tools: [{ name: "lookup", input_schema: { type: "object" }, frobnicate: 1 }],
        }, "tools[0].frobnicate"),
    );

    await t.step(
      "chat completions: an answer echoed back whole by an SDK is served, and OpenAI gets only what it defines",
      async () => {
        const call = { id: "call_1", type: "function", function: { name: "lookup", arguments: "{}" } };
        const answer = await post("/v1/chat/completions", {
          model: "auto",
          routing_contract: { provider_allowlist: ["openai"] },
          messages: [user, {
            role: "assistant",
            content: null,
            refusal: null,
            annotations: [],
            audio: null,
            function_call: null,
            reasoning_content: "the router's own reasoning, echoed",
            tool_calls: [{ ...call, index: 0 }],
          }, { role: "tool", tool_call_id: "call_1", content: "found" }],
        });
        assert.equal(answer.status, 200, JSON.stringify(answer.body));
        const sent = router.openai.requests.at(-1) as { messages: Record<string, unknown>[] };
        assert.deepEqual(sent.messages[1], { content: null, role: "assistant", tool_calls: [call] });
        assert.equal((await router.record(answer.requestId)).attempts[0].provider, "openai");
      },
    );

    await t.step("chat completions: json_schema.description reaches OpenAI as sent", async () => {
      const format = {
        type: "json_schema",
        json_schema: { description: "a city", name: "city", schema: {} },
      };
      const answer = await post("/v1/chat/completions", {
        model: "auto",
        routing_contract: { provider_allowlist: ["openai"] },
        messages: [user],
        response_format: format,
      });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
      assert.deepEqual((router.openai.requests.at(-1) as Record<string, unknown>).response_format, format);
    });

    await t.step("messages: a text block echoed with citations: null is served", async () => {
      const answer = await post("/v1/messages", {
        model: "auto",
        max_tokens: 16,
        messages: [
          user,
          { role: "assistant", content: [{ type: "text", text: "hi", citations: null }] },
          user,
        ],
      });
      assert.equal(answer.status, 200, JSON.stringify(answer.body));
    });
  } finally {
    await router.close();
  }
});
