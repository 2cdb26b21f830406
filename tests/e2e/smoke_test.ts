/**
 * The acceptance smoke test: everything through `deno task serve`, as a user runs it, on a fresh artifacts
 * folder. Four requests (JSON, stream, fallback, Anthropic Messages), a clean SIGTERM, one EDR file per
 * answer, `deno task verify` clean, a restart on the same folder that continues the chain, and
 * `deno task replay` of a local record to MATCH.
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import { edrPath, type EdrRecord, validateEdr } from "../../lib/edr/mod.ts";
import { policyWith, runTask, type ServedRouter, startServe } from "./serve_harness.ts";

const userTurn = (text: string) => [{ role: "user" as const, content: text }];

Deno.test("smoke: deno task serve answers, records, stops cleanly, verifies, restarts and replays", async (t) => {
  const artifactsDir = await Deno.makeTempDir({ prefix: "hi-smoke-" });
  let served: ServedRouter | null = await startServe({ artifactsDir });
  let restarted: ServedRouter | null = null;
  /** x-request-id of each answer, by what the request was. */
  const ids: Record<string, string> = {};
  let firstRun: EdrRecord[] = [];
  try {
    const s = served;
    // The first request right after the banner is its own test below; here local health is known first.
    await s.waitForOutput(/local health (fit|unfit)/);

    await t.step("a JSON chat request is answered locally (openai SDK)", async () => {
      const { data, response } = await s.client.chat.completions
        .create({ model: "auto", messages: userTurn("Say hello."), seed: 42, temperature: 0 })
        .withResponse();
      assert.equal(data.object, "chat.completion");
      assert.ok(data.choices[0].message.content);
      ids.json = response.headers.get("x-request-id")!;
      assert.match(ids.json, /^req_[0-9a-f]{32}$/);
      assert.equal((await s.record(ids.json)).decision.provider, "local");
    });

    await t.step("a streamed chat request streams an answer", async () => {
      const { data: stream, response } = await s.client.chat.completions
        .create({ model: "auto", messages: userTurn("Stream a short answer."), stream: true })
        .withResponse();
      let text = "";
      for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? "";
      assert.ok(text.length > 0);
      ids.stream = response.headers.get("x-request-id")!;
      assert.ok(ids.stream);
    });

    await t.step("when Ollama fails, a cloud provider answers", async () => {
      s.ollama.mode = "error500";
      try {
        const { data, response } = await s.client.chat.completions
          .create({ model: "auto", messages: userTurn("Answer even if local fails.") })
          .withResponse();
        assert.ok(data.choices[0].message.content);
        assert.equal(data.model, "claude-sonnet-4-5");
        ids.fallback = response.headers.get("x-request-id")!;
        assert.ok(ids.fallback);
      } finally {
        s.ollama.mode = "normal";
      }
    });

    await t.step("POST /v1/messages answers the Anthropic SDK in Anthropic's format", async () => {
      const anthropic = new Anthropic({ baseURL: s.url, apiKey: "unused", maxRetries: 0 });
      const { data, response } = await anthropic.messages
        .create({ model: "auto", max_tokens: 64, messages: userTurn("Hello from Anthropic's SDK.") })
        .withResponse();
      assert.equal(data.type, "message");
      assert.equal(data.role, "assistant");
      assert.equal(data.content[0].type, "text");
      ids.messages = response.headers.get("x-request-id")!;
      assert.ok(ids.messages);
    });

    await t.step("SIGTERM ends it with exit code 0 and no stack trace", async () => {
      const { code, output } = await s.stop("SIGTERM");
      assert.equal(code, 0, output);
      assert.ok(!output.includes("Uncaught"), output);
      assert.ok(!output.includes("    at "), output);
    });

    await t.step("each answer has exactly one EDR file, with its x-request-id", async () => {
      firstRun = await s.records();
      assert.deepEqual(
        firstRun.map((r) => r.request_id).sort(),
        Object.values(ids).sort(),
        "one file per x-request-id and no other",
      );
      const byId = new Map(firstRun.map((r) => [r.request_id, r]));
      assert.equal(byId.get(ids.json)!.decision.provider, "local");
      assert.equal(byId.get(ids.stream)!.stream, true);
      assert.equal(byId.get(ids.fallback)!.decision.path, "fallback");
      assert.notEqual(byId.get(ids.messages)!.decision.path, "rejected");
    });

    await t.step("deno task verify finds the records intact", async () => {
      const { code, output } = await runTask(["verify", `${artifactsDir}/edr`]);
      assert.equal(code, 0, output);
    });

    await t.step("a restart on the same folder answers and continues the chain", async () => {
      await s.close();
      served = null;
      restarted = await startServe({ artifactsDir });
      const { response } = await restarted.client.chat.completions
        .create({ model: "auto", messages: userTurn("Still here after a restart?") })
        .withResponse();
      const record = await restarted.record(response.headers.get("x-request-id")!);
      const last = firstRun.at(-1)!;
      assert.equal(record.sequence, last.sequence + 1);
      assert.equal(record.prev_edr_hash, last.edr_hash);
    });

    await t.step("deno task replay re-executes a local record to MATCH", async () => {
      const local = firstRun.find((r) => r.request_id === ids.json)!;
      const { code, output } = await runTask(
        ["replay", `${artifactsDir}/${edrPath(local)}`],
        { OLLAMA_HOST: restarted!.ollama.url, HI_ARTIFACTS_DIR: artifactsDir },
      );
      assert.equal(code, 0, output);
      assert.match(output, /MATCH/);
    });
  } finally {
    await (served as ServedRouter | null)?.close();
    await (restarted as ServedRouter | null)?.close();
    await Deno.remove(artifactsDir, { recursive: true });
  }
});

Deno.test("a request sent before the first health probe finishes waits for it and leaves a schema-valid EDR", async () => {
  // An Ollama that accepts connections and never answers keeps the router's first probe in flight until
  // its timeout; a request that arrives meanwhile is decided on the probe's outcome, not on no view at all.
  const silent = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    for await (const conn of silent) held.push(conn);
  })();
  const s = await startServe({
    env: { OLLAMA_HOST: `127.0.0.1:${silent.addr.port}` },
    policy: policyWith({ health: { probe_timeout_ms: 1_500 } }),
  });
  try {
    const { response } = await s.client.chat.completions
      .create({
        model: "auto",
        messages: userTurn("Are you up yet?"),
        // @ts-expect-error: router extension field
        routing_contract: { provider_allowlist: ["anthropic"] },
      })
      .withResponse();
    const record = await s.record(response.headers.get("x-request-id")!);
    const valid = validateEdr(record);
    assert.ok(valid.valid, `EDR_v1.0.0: ${valid.valid ? "" : valid.errors.join("; ")}`);
    assert.equal(record.decision_inputs.health?.state, "unfit", "decided on the probe that timed out");
    assert.equal(record.decision.provider, "anthropic");
  } finally {
    silent.close();
    for (const conn of held) conn.close();
    await accepting.catch(() => {});
    await s.close();
  }
});
