/**
 * What a user sees of each decision without opening an EDR, through `deno task serve`: the `x-hi-*`
 * headers on JSON, streamed, fallback, Anthropic and error answers (and that a browser may read them),
 * and the one log line per request on stdout, which agrees with the request's EDR and carries no prompt
 * text and no key; `HI_LOG` picks which lines print.
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import type { EdrRecord } from "../../lib/edr/mod.ts";
import { runTask, type ServedRouter, startServeHealthy } from "./serve_harness.ts";

/** Text no line of output may contain: it is in every prompt sent below. */
const PROMPT_MARK = "zebra-quartz-prompt-7731";
/** A client key the router does not need (no client keys configured) and must never print. */
const CLIENT_KEY = "sk-client-obsidian-4412";
const userTurn = (text: string) => [{ role: "user" as const, content: `${text} ${PROMPT_MARK}` }];

const DECISION_HEADERS = ["x-hi-provider", "x-hi-model", "x-hi-reason", "x-hi-fallbacks"];

/** The request lines printed so far (JSON lines: the harness reads stdout through a pipe). */
function requestLines(output: string): Record<string, unknown>[] {
  return output.split("\n").filter((line) => line.startsWith('{"ts"')).map((line) => JSON.parse(line));
}

async function post(s: ServedRouter, path: string, body: unknown): Promise<Response> {
  return await fetch(`${s.url}${path}`, {
    method: "POST",
    headers: { "content-type": "application/json", authorization: `Bearer ${CLIENT_KEY}` },
    body: JSON.stringify(body),
  });
}

/** Asserts the headers say what the record says, and that a page on another origin may read them. */
function assertHeadersMatch(response: Response, record: EdrRecord, fallbacks: number): void {
  const h = response.headers;
  assert.equal(h.get("x-hi-provider"), record.decision.provider);
  assert.equal(h.get("x-hi-model"), record.decision.model);
  assert.equal(h.get("x-hi-fallbacks"), String(fallbacks));
  assert.ok(record.decision_factors.includes(h.get("x-hi-reason")!), `${h.get("x-hi-reason")} is a factor`);
  const exposed = (h.get("access-control-expose-headers") ?? "").split(/,\s*/);
  for (const name of [...DECISION_HEADERS, "x-request-id"]) assert.ok(exposed.includes(name), name);
}

Deno.test("decision headers and one log line per request, through deno task serve", async (t) => {
  const s = await startServeHealthy({ env: { HI_LOG: "info" } });
  const ids: Record<string, string> = {};
  try {
    await t.step("a local JSON answer names local, its model, LOCAL_FIT and 0 fallbacks", async () => {
      const response = await post(s, "/v1/chat/completions", {
        model: "auto",
        messages: userTurn("Say hello."),
      });
      assert.equal(response.status, 200);
      await response.body?.cancel();
      ids.json = response.headers.get("x-request-id")!;
      const record = await s.record(ids.json);
      assertHeadersMatch(response, record, 0);
      assert.equal(response.headers.get("x-hi-provider"), "local");
      assert.equal(response.headers.get("x-hi-reason"), "LOCAL_FIT");
    });

    await t.step("a stream carries the headers with its first byte", async () => {
      const response = await post(s, "/v1/chat/completions", {
        model: "auto",
        messages: userTurn("Stream a short answer."),
        stream: true,
      });
      assert.equal(response.headers.get("content-type"), "text/event-stream");
      const text = await response.text();
      assert.match(text, /\[DONE\]/);
      ids.stream = response.headers.get("x-request-id")!;
      assertHeadersMatch(response, await s.record(ids.stream), 0);
    });

    await t.step("when Ollama fails and the cloud answers, x-hi-fallbacks is 1", async () => {
      s.ollama.mode = "error500";
      try {
        for (const stream of [false, true]) {
          const response = await post(s, "/v1/chat/completions", {
            model: "auto",
            messages: userTurn("Answer even if local fails."),
            stream,
          });
          assert.equal(response.status, 200);
          await response.text();
          const id = response.headers.get("x-request-id")!;
          ids[stream ? "fallbackStream" : "fallback"] = id;
          const record = await s.record(id);
          assert.equal(record.decision.path, "fallback");
          assertHeadersMatch(response, record, 1);
          assert.equal(response.headers.get("x-hi-provider"), "anthropic");
        }
      } finally {
        s.ollama.mode = "normal";
      }
    });

    await t.step("/v1/messages answers carry them too (Anthropic SDK)", async () => {
      const anthropic = new Anthropic({ baseURL: s.url, apiKey: CLIENT_KEY, maxRetries: 0 });
      const { response } = await anthropic.messages
        .create({ model: "auto", max_tokens: 64, messages: userTurn("Hello from Anthropic's SDK.") })
        .withResponse();
      ids.messages = response.headers.get("x-request-id")!;
      assert.equal(response.headers.get("request-id"), ids.messages);
      assertHeadersMatch(response, await s.record(ids.messages), 0);
    });

    await t.step("an error answer names its code and no provider", async () => {
      const response = await post(s, "/v1/chat/completions", {
        model: "auto",
        messages: userTurn("Refused."),
        routing_contract: { classification: "TOP_SECRET" },
      });
      assert.equal(response.status, 400);
      await response.body?.cancel();
      ids.error = response.headers.get("x-request-id")!;
      assert.equal(response.headers.get("x-hi-reason"), "INVALID_ROUTING_CONTRACT");
      assert.equal(response.headers.get("x-hi-fallbacks"), "0");
      assert.equal(response.headers.get("x-hi-provider"), null);
      assert.match(response.headers.get("access-control-expose-headers")!, /x-hi-reason/);
    });

    await t.step("each request printed exactly one JSON line that agrees with its EDR", async () => {
      for (const id of Object.values(ids)) await s.waitForOutput(new RegExp(`"request_id":"${id}"`));
      const lines = requestLines(s.output());
      assert.deepEqual(lines.map((l) => l.request_id).sort(), Object.values(ids).sort());
      for (const line of lines) {
        const record = await s.record(line.request_id as string);
        assert.equal(line.msg, "request");
        assert.ok(!Number.isNaN(Date.parse(line.ts as string)));
        assert.equal(line.endpoint, record.endpoint);
        assert.equal(line.stream, record.stream);
        assert.equal(line.classification, record.effective_contract?.classification ?? null);
        assert.equal(line.provider, record.decision.provider);
        assert.equal(line.model, record.decision.model);
        assert.equal(line.path, record.decision.path);
        assert.equal(line.total_ms, record.timings.total_ms);
        assert.equal(line.first_byte_ms, record.timings.first_byte_ms);
        assert.equal(line.input_tokens, record.usage?.prompt_tokens ?? null);
        assert.equal(line.output_tokens, record.usage?.completion_tokens ?? null);
      }
      const byId = new Map(lines.map((l) => [l.request_id, l]));
      const json = byId.get(ids.json)!;
      assert.equal(json.level, "info");
      assert.equal(json.status, 200);
      assert.equal(json.reason, "LOCAL_FIT");
      assert.equal(json.fallbacks, 0);
      assert.equal(json.attempt_failures, undefined);
      assert.ok((json.output_tokens as number) > 0);
      assert.equal(typeof byId.get(ids.stream)!.first_byte_ms, "number");
      for (const id of [ids.fallback, ids.fallbackStream]) {
        const fallback = byId.get(id)!;
        assert.equal(fallback.level, "warn");
        assert.equal(fallback.fallbacks, 1);
        assert.equal(fallback.provider, "anthropic");
        const failed = (await s.record(id)).attempts.find((a) => a.outcome === "fallback")!;
        assert.equal(failed.provider, "local");
        assert.deepEqual(fallback.attempt_failures, [`local:${failed.error_code}`]);
      }
      const error = byId.get(ids.error)!;
      assert.equal(error.level, "warn");
      assert.equal(error.status, 400);
      assert.equal(error.reason, "INVALID_ROUTING_CONTRACT");
    });

    await t.step("no output line holds prompt text, the client key or a provider key", async () => {
      const { output } = await s.stop();
      for (const secret of [PROMPT_MARK, CLIENT_KEY, s.openai.apiKey, "sk-ant-test"]) {
        assert.ok(!output.includes(secret), `the output holds ${secret}:\n${output}`);
      }
    });
  } finally {
    await s.close();
  }
});

Deno.test("HI_LOG=warn prints only the fallback's line, HI_LOG=off none, and a bad HI_LOG stops the start", async (t) => {
  await t.step("warn", async () => {
    const s = await startServeHealthy({ env: { HI_LOG: "warn" } });
    try {
      const local = await post(s, "/v1/chat/completions", { model: "auto", messages: userTurn("Hi.") });
      await local.text();
      s.ollama.mode = "error500";
      const fallback = await post(s, "/v1/chat/completions", { model: "auto", messages: userTurn("Hi.") });
      await fallback.text();
      const { output } = await s.stop();
      assert.deepEqual(
        requestLines(output).map((l) => [l.request_id, l.level]),
        [[fallback.headers.get("x-request-id"), "warn"]],
      );
    } finally {
      await s.close();
    }
  });

  await t.step("off", async () => {
    const s = await startServeHealthy({ env: { HI_LOG: "off" } });
    try {
      s.ollama.mode = "error500";
      const response = await post(s, "/v1/chat/completions", { model: "auto", messages: userTurn("Hi.") });
      await response.text();
      assert.equal(response.headers.get("x-hi-fallbacks"), "1");
      await s.record(response.headers.get("x-request-id")!);
      const { output } = await s.stop();
      assert.deepEqual(requestLines(output), []);
    } finally {
      await s.close();
    }
  });

  await t.step("a value that is not a level", async () => {
    const { code, output } = await runTask(["serve"], { HI_LOG: "loud", HI_PORT: "0" });
    assert.equal(code, 1, output);
    assert.match(
      output,
      /^hybrid-inference cannot start: HI_LOG must be one of debug, info, warn, error, off/m,
    );
  });
});
