/**
 * The drafts the pipeline hands to the writer, fixed for a set of scenarios. The golden files were made by
 * the request path as it was before it became the admit → decide → attempt → relay → record pipeline, so
 * they hold the refactor to the same records (`UPDATE_GOLDEN=1` rewrites them after an intended change).
 */
import assert from "node:assert/strict";
import { chat, type Pipeline, type Script, stableDraft, startPipeline, upstreamError } from "./fakes.ts";

const GOLDEN = new URL("./golden/", import.meta.url);
const HELLO = { model: "auto", messages: [{ role: "user", content: "hello" }] };
const connectFailed = (): Script => ({
  kind: "fail",
  error: upstreamError("UPSTREAM_CONNECT_FAILED", 502, true),
});

interface Scenario {
  name: string;
  setup?: Parameters<typeof startPipeline>[0];
  run: (p: Pipeline) => Promise<number>;
}

async function send(p: Pipeline, body: Record<string, unknown>, headers?: Record<string, string>) {
  const response = await chat(p, body, { headers });
  await response.arrayBuffer();
  return response.status;
}

export const SCENARIOS: Scenario[] = [
  { name: "json_local", run: (p) => send(p, HELLO) },
  { name: "stream_local", run: (p) => send(p, { ...HELLO, stream: true }) },
  {
    name: "json_fallback",
    setup: { local: [connectFailed()] },
    run: (p) => send(p, HELLO),
  },
  {
    name: "stream_fallback_before_first_byte",
    setup: {
      local: [{ kind: "cut", before: 0, error: upstreamError("UPSTREAM_STREAM_CUT", 502, false) }],
    },
    run: (p) => send(p, { ...HELLO, stream: true }),
  },
  {
    name: "stream_cut_mid_stream",
    setup: {
      local: [{ kind: "cut", before: 2, error: upstreamError("UPSTREAM_STREAM_CUT", 502, false) }],
    },
    run: (p) => send(p, { ...HELLO, stream: true }),
  },
  {
    name: "json_all_fail",
    setup: {
      local: [connectFailed()],
      openai: [{ kind: "fail", error: upstreamError("UPSTREAM_SERVER_ERROR", 502, true) }],
      anthropic: [{ kind: "fail", error: upstreamError("UPSTREAM_SERVER_ERROR", 502, true) }],
    },
    run: (p) => send(p, HELLO),
  },
  { name: "json_heavy_slot", run: (p) => send(p, { ...HELLO, model: "qwen3:32b" }) },
  {
    name: "json_heavy_slot_busy",
    setup: { policy: { slot: { max_wait_ms: 30 } } },
    run: async (p) => {
      const held = p.slot.tryAcquire()!;
      try {
        return await send(p, { ...HELLO, model: "qwen3:32b" });
      } finally {
        held.release();
      }
    },
  },
  {
    name: "json_heavy_slot_busy_refuse",
    setup: { policy: { slot: { when_busy: "refuse" } } },
    run: async (p) => {
      const held = p.slot.tryAcquire()!;
      try {
        return await send(p, { ...HELLO, model: "qwen3:32b" });
      } finally {
        held.release();
      }
    },
  },
  { name: "json_half_open_trial", setup: { circuit: "half_open" }, run: (p) => send(p, HELLO) },
  { name: "rejected_unknown_model", run: (p) => send(p, { ...HELLO, model: "no-such-model" }) },
  {
    name: "rejected_secret_cloud_only",
    setup: { local: [connectFailed()] },
    run: (p) => send(p, { ...HELLO, routing_contract: { classification: "SECRET" } }),
  },
  { name: "bad_request", run: (p) => send(p, { model: "auto", messages: "nope" }) },
  {
    name: "unauthenticated",
    setup: { policy: { client_keys: [{ id: "other", sha256: "ab".repeat(32) }] } },
    run: (p) => send(p, HELLO),
  },
  {
    name: "stream_client_abort",
    setup: { local: [{ kind: "cut", before: 2, error: null }] },
    run: async (p) => {
      const client = new AbortController();
      const response = await chat(p, { ...HELLO, stream: true }, { signal: client.signal });
      const reader = response.body!.getReader();
      await reader.read();
      client.abort();
      await reader.cancel().catch(() => {});
      const deadline = Date.now() + 5000;
      while (p.sink.drafts.length === 0 && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 5));
      }
      return response.status;
    },
  },
];

for (const scenario of SCENARIOS) {
  Deno.test(`golden draft: ${scenario.name}`, async () => {
    const p = startPipeline(scenario.setup);
    const status = await scenario.run(p);
    assert.equal(p.sink.drafts.length, 1, "exactly one record");
    const actual = { status, draft: stableDraft(p.sink.drafts[0]) };
    const file = new URL(`${scenario.name}.json`, GOLDEN);
    if (Deno.env.get("UPDATE_GOLDEN") === "1") {
      await Deno.writeTextFile(file, JSON.stringify(actual, null, 2) + "\n");
    }
    const expected = JSON.parse(await Deno.readTextFile(file));
    assert.deepEqual(actual, expected);
    // Every lease the slot granted was released exactly once.
    assert.ok(p.slot.releases.every((n) => n === 1), `releases ${p.slot.releases}`);
    assert.equal(p.health.trials, 0, "no half-open trial left held");
    assert.equal(p.inFlight.count, 0, "the request no longer counts as in flight");
  });
}
