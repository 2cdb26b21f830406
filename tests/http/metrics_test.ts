import assert from "node:assert/strict";
import { RouterMetrics } from "../../lib/http/metrics.ts";

// Go's ParseFloat (Prometheus's parser) accepts NaN in any case; prom-client writes "Nan".
/** Minimal Prometheus text-format check: every sample line belongs to a declared metric family. */
function parseExposition(body: string): { types: Map<string, string>; samples: Map<string, number> } {
  const types = new Map<string, string>();
  const samples = new Map<string, number>();
  for (const line of body.split("\n")) {
    if (line === "") continue;
    const type = /^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$/.exec(line);
    if (type) {
      types.set(type[1], type[2]);
      continue;
    }
    if (line.startsWith("# HELP ")) continue;
    const sample = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})? (-?[0-9.e+-]+|[Nn]a[Nn]|[+-]Inf)$/.exec(line);
    assert.ok(sample, `not a Prometheus sample line: ${line}`);
    const family = sample[1].replace(/_(bucket|sum|count)$/, "");
    assert.ok(types.has(sample[1]) || types.has(family), `sample before its # TYPE line: ${line}`);
    samples.set(`${sample[1]}${sample[2] ?? ""}`, Number(sample[3]));
  }
  return { types, samples };
}

Deno.test("router metrics exposition", async (t) => {
  const metrics = new RouterMetrics();

  await t.step("it is served as Prometheus text", async () => {
    const { contentType } = await metrics.render();
    assert.match(contentType, /^text\/plain; version=0\.0\.4/);
  });

  await t.step("before any traffic the health and slot gauges already have values", async () => {
    const { samples } = parseExposition((await metrics.render()).body);
    assert.equal(samples.get('hi_local_health_state{state="unknown"}'), 1);
    assert.equal(samples.get('hi_local_health_state{state="fit"}'), 0);
    assert.equal(samples.get('hi_local_circuit_state{circuit="closed"}'), 1);
    assert.equal(samples.get("hi_slot_busy"), 0);
  });

  await t.step("every observation shows up as a series with the hi_ prefix", async () => {
    const request = {
      endpoint: "/v1/chat/completions",
      provider: "local",
      outcome: "primary",
      status: 200,
      durationSeconds: 0.004,
    } as const;
    metrics.observeRequest(request);
    metrics.observeRequest(request);
    metrics.observeRequest({ ...request, provider: "anthropic", outcome: "fallback", durationSeconds: 2 });
    metrics.countFallback("local", "anthropic", "LOCAL_UNFIT");
    metrics.setHealth("unfit", "open");
    metrics.setSlot({ busy: true, queueDepth: 3 });
    metrics.observeSlotWait(0.25, "acquired");
    metrics.observeSlotWait(30, "timeout");
    metrics.countEdr("written");
    metrics.countEdr("written");
    metrics.countEdr("failed");

    const { types, samples } = parseExposition((await metrics.render()).body);
    assert.equal(types.get("hi_requests_total"), "counter");
    assert.equal(types.get("hi_request_duration_seconds"), "histogram");
    assert.equal(types.get("hi_fallbacks_total"), "counter");
    assert.equal(types.get("hi_local_health_state"), "gauge");
    assert.equal(types.get("hi_slot_wait_seconds"), "histogram");
    assert.equal(types.get("hi_edr_writes_total"), "counter");
    for (const name of types.keys()) assert.ok(name.startsWith("hi_"), name);

    const ep = 'endpoint="/v1/chat/completions"';
    assert.equal(samples.get(`hi_requests_total{${ep},provider="local",outcome="primary",status="200"}`), 2);
    assert.equal(
      samples.get(`hi_request_duration_seconds_count{${ep},provider="local",outcome="primary"}`),
      2,
    );
    assert.equal(
      samples.get(`hi_request_duration_seconds_bucket{le="0.005",${ep},provider="local",outcome="primary"}`),
      2,
    );
    assert.equal(
      samples.get(`hi_request_duration_seconds_bucket{le="0.001",${ep},provider="local",outcome="primary"}`),
      0,
    );
    assert.equal(
      samples.get(
        `hi_request_duration_seconds_bucket{le="60",${ep},provider="anthropic",outcome="fallback"}`,
      ),
      1,
    );
    assert.equal(samples.get('hi_fallbacks_total{from="local",to="anthropic",reason="LOCAL_UNFIT"}'), 1);
    assert.equal(samples.get('hi_local_health_state{state="unfit"}'), 1);
    assert.equal(samples.get('hi_local_health_state{state="unknown"}'), 0);
    assert.equal(samples.get('hi_local_circuit_state{circuit="open"}'), 1);
    assert.equal(samples.get('hi_local_circuit_state{circuit="closed"}'), 0);
    assert.equal(samples.get("hi_slot_busy"), 1);
    assert.equal(samples.get("hi_slot_queue_depth"), 3);
    assert.equal(samples.get('hi_slot_wait_seconds_count{outcome="timeout"}'), 1);
    assert.equal(samples.get('hi_edr_writes_total{outcome="written"}'), 2);
    assert.equal(samples.get('hi_edr_writes_total{outcome="failed"}'), 1);
  });

  await t.step("two routers in one process keep separate counts (no global registry)", async () => {
    const other = new RouterMetrics();
    const { samples } = parseExposition((await other.render()).body);
    assert.equal([...samples.keys()].some((k) => k.startsWith("hi_requests_total{")), false);
  });

  await t.step("process metrics are available on request", async () => {
    const withProcess = new RouterMetrics({ defaultMetrics: true });
    const { types } = parseExposition((await withProcess.render()).body);
    assert.ok([...types.keys()].some((k) => k.startsWith("hi_process_")));
  });

  await t.step("the request-path calls stay well under the per-request budget", () => {
    const fresh = new RouterMetrics();
    const n = 20_000;
    const start = performance.now();
    for (let i = 0; i < n; i++) {
      fresh.observeRequest({
        endpoint: "/v1/chat/completions",
        provider: "local",
        outcome: "primary",
        status: 200,
        durationSeconds: 0.01,
      });
      fresh.setSlot({ busy: false, queueDepth: 0 });
    }
    const perRequestMs = (performance.now() - start) / n;
    // Generous bound (2 shared cores, parallel tests): the real budget is 0.2 ms for the whole router.
    assert.ok(perRequestMs < 0.1, `${perRequestMs} ms per request`);
  });
});
