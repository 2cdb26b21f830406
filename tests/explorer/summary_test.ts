/** The explorer's table row and day statistics: pure functions of what the record holds. */
import assert from "node:assert/strict";
import type { EdrRecord } from "../../lib/edr/mod.ts";
import { dayStats, summarize } from "../../lib/explorer/mod.ts";

/** Only the members summarize() reads. */
function record(overrides: Partial<EdrRecord>): EdrRecord {
  return {
    request_id: `req_${"a".repeat(32)}`,
    timestamp: "2026-11-30T10:00:00.000Z",
    sequence: 1,
    endpoint: "/v1/chat/completions",
    stream: false,
    effective_contract: { classification: "INTERNAL" },
    decision: { provider: "local", model: "qwen3:8b", protocol: "ollama_chat", path: "primary" },
    decision_factors: ["CLASSIFICATION_INTERNAL", "LATENCY_INTERACTIVE", "LOCAL_FIT"],
    attempts: [],
    failure: null,
    timings: { decide_ms: 0.1, first_byte_ms: 2, total_ms: 3 },
    edr_hash: "0".repeat(64),
    ...overrides,
  } as unknown as EdrRecord;
}

Deno.test("the row's reason: failure code, else the error a fallback was taken on, else the first own factor", () => {
  assert.equal(summarize(record({})).reason, "LOCAL_FIT");
  const fallback = summarize(record({
    attempts: [
      {
        provider: "local",
        model: "qwen3:8b",
        status: 500,
        duration_ms: 1,
        error_code: "UPSTREAM_UNAVAILABLE",
        outcome: "fallback",
      },
      {
        provider: "openai",
        model: "gpt-4o-mini",
        status: 200,
        duration_ms: 1,
        error_code: null,
        outcome: "ok",
      },
    ],
  }));
  assert.equal(fallback.reason, "UPSTREAM_UNAVAILABLE");
  assert.equal(fallback.fallbacks, 1);
  assert.ok(fallback.reasons.includes("LOCAL_FIT"));
  const failed = summarize(record({
    effective_contract: null,
    decision: { provider: null, model: null, protocol: null, path: "rejected" },
    decision_factors: [],
    failure: { code: "INVALID_ROUTING_CONTRACT", type: "validation_error", stage: "parse", message: "x" },
  }));
  assert.equal(failed.reason, "INVALID_ROUTING_CONTRACT");
  assert.equal(failed.status, "validation_error");
  assert.equal(failed.provider, "none");
  assert.equal(failed.classification, "none");
  assert.deepEqual(failed.reasons, ["INVALID_ROUTING_CONTRACT"]);
});

Deno.test("day statistics: histogram bucket edges, shares and quantiles", () => {
  const rows = [10, 10.5, 25, 9999, 20000].map((total_ms, i) =>
    summarize(record({
      sequence: i + 1,
      timings: { decide_ms: null, first_byte_ms: null, total_ms },
      decision: i < 4
        ? { provider: "local", model: "m", protocol: "ollama_chat", path: "primary" }
        : { provider: "openai", model: "m", protocol: "openai_chat", path: "fallback" },
    }))
  );
  const stats = dayStats("2026-11-30", rows);
  const counts = Object.fromEntries(stats.latency_histogram.map((b) => [String(b.le_ms), b.count]));
  // A bound is inclusive: 10 ms falls in "≤10", 10.5 in "≤25".
  assert.equal(counts["10"], 1);
  assert.equal(counts["25"], 2);
  assert.equal(counts["10000"], 1);
  assert.equal(counts["null"], 1);
  assert.equal(stats.latency_histogram.reduce((n, b) => n + b.count, 0), 5);
  assert.deepEqual(stats.provider_share, { local: 0.8, openai: 0.2 });
  assert.deepEqual(stats.latency_ms, { p50: 25, p95: 20000, max: 20000 });
  assert.deepEqual(dayStats("2026-11-30", []).latency_ms, { p50: null, p95: null, max: null });
});
