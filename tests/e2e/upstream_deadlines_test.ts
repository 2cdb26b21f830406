/**
 * Deadlines that mean what they say, through `deno task serve`: response headers alone do not satisfy the
 * first-byte deadline (the first event does, or a JSON answer's whole body), and a stream that stalls
 * between events is ended by `limits.stream_idle_timeout_ms`. Either way the heavy slot is released, the
 * EDR records the timeout, and before any byte reached the client the next candidate may still answer.
 */
import assert from "node:assert/strict";
import { policyWith, type ServedRouter, startServeHealthy } from "./serve_harness.ts";

const TIMEOUT_MS = 500;
/** Far above the deadlines under test: a request that needs it was not bounded by them. */
const CLIENT_GIVES_UP_MS = 10_000;

const heavyOnly = { latency: "batch", provider_allowlist: ["local"] };

async function post(router: ServedRouter, body: Record<string, unknown>) {
  const started = performance.now();
  const response = await fetch(`${router.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "hello" }], ...body }),
    signal: AbortSignal.timeout(CLIENT_GIVES_UP_MS),
  });
  const text = await response.text();
  return {
    status: response.status,
    text,
    requestId: response.headers.get("x-request-id")!,
    elapsedMs: performance.now() - started,
  };
}

/** A heavy request right after: served, so the slot the timed-out one held was released. */
async function heavyServed(router: ServedRouter): Promise<void> {
  router.ollama.mode = "normal";
  const answer = await post(router, { routing_contract: heavyOnly });
  assert.equal(answer.status, 200, answer.text);
  const record = await router.record(answer.requestId);
  assert.equal(record.slot?.outcome, "acquired");
}

async function assertTimeoutRecord(router: ServedRouter, requestId: string, stage: string): Promise<void> {
  const record = await router.record(requestId);
  assert.equal(record.failure?.type, "provider_error");
  assert.equal(record.failure?.code, "UPSTREAM_TIMEOUT");
  assert.equal(record.failure?.stage, stage);
  assert.equal(record.attempts[0].error_code, "UPSTREAM_TIMEOUT");
}

Deno.test("an upstream that sends headers and stalls is timed out, releases the slot and leaves an EDR", async (t) => {
  const router = await startServeHealthy({
    policy: policyWith({
      limits: {
        first_byte_timeout_ms: TIMEOUT_MS,
        stream_idle_timeout_ms: TIMEOUT_MS,
        total_timeout_ms: 60_000,
      },
      // Timeouts here must not open the circuit for the requests that follow.
      health: { circuit: { failure_threshold: 100 } },
      slot: { when_busy: "wait", max_wait_ms: 2_000 },
    }),
  });
  try {
    await t.step(
      "JSON: headers then nothing is a 504 UPSTREAM_TIMEOUT after the first-byte deadline",
      async () => {
        router.ollama.mode = "stall_after_headers";
        const answer = await post(router, { routing_contract: heavyOnly });
        assert.equal(answer.status, 504, answer.text);
        assert.equal(JSON.parse(answer.text).error.code, "UPSTREAM_TIMEOUT");
        assert.ok(answer.elapsedMs >= TIMEOUT_MS * 0.9, `answered after ${answer.elapsedMs} ms`);
        await assertTimeoutRecord(router, answer.requestId, "execute");
        await heavyServed(router);
      },
    );

    await t.step("JSON: half a body then nothing is bounded the same way", async () => {
      router.ollama.mode = "stall_between_events";
      const answer = await post(router, { routing_contract: heavyOnly });
      assert.equal(answer.status, 504, answer.text);
      await assertTimeoutRecord(router, answer.requestId, "execute");
      await heavyServed(router);
    });

    await t.step("stream: headers then no event is a 504 before the stream starts", async () => {
      router.ollama.mode = "stall_after_headers";
      const answer = await post(router, { stream: true, routing_contract: heavyOnly });
      assert.equal(answer.status, 504, answer.text);
      assert.equal(JSON.parse(answer.text).error.code, "UPSTREAM_TIMEOUT");
      await assertTimeoutRecord(router, answer.requestId, "execute");
      await heavyServed(router);
    });

    await t.step(
      "stream: a stall between events ends the stream with an UPSTREAM_TIMEOUT error event",
      async () => {
        router.ollama.mode = "stall_between_events";
        const answer = await post(router, { stream: true, routing_contract: heavyOnly });
        assert.equal(answer.status, 200);
        assert.match(answer.text, /"content":"The"/, "the first event reached the client");
        assert.match(answer.text, /"code":"UPSTREAM_TIMEOUT"/);
        assert.doesNotMatch(answer.text, /\[DONE\]/);
        await assertTimeoutRecord(router, answer.requestId, "stream");
        await heavyServed(router);
      },
    );

    await t.step(
      "before the first byte reached the client, a stalled local model falls back to the cloud",
      async () => {
        for (const stream of [false, true]) {
          router.ollama.mode = "stall_after_headers";
          const answer = await post(router, {
            stream,
            routing_contract: { provider_allowlist: ["local", "openai"] },
          });
          assert.equal(answer.status, 200, answer.text);
          const record = await router.record(answer.requestId);
          assert.equal(record.failure, null);
          assert.deepEqual(
            record.attempts.map((a) => [a.provider, a.outcome, a.error_code]),
            [["local", "fallback", "UPSTREAM_TIMEOUT"], ["openai", "ok", null]],
          );
        }
        router.ollama.mode = "normal";
      },
    );
  } finally {
    await router.close();
  }
});
