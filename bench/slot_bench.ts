import { HealthGate, healthPolicySchema } from "../lib/health/mod.ts";
import { HeavySlot, slotPolicySchema } from "../lib/slot/mod.ts";
import { RouterMetrics } from "../lib/http/metrics.ts";

const slot = new HeavySlot(slotPolicySchema.parse({}));

Deno.bench("heavy slot: tryAcquire + release", { group: "request path" }, () => {
  slot.tryAcquire()!.release();
});

// Never started: snapshot() reads memory only, which is what the request path does.
const gate = new HealthGate({ ollamaUrl: "http://127.0.0.1:9", policy: healthPolicySchema.parse({}) });

Deno.bench("health gate: snapshot()", { group: "request path" }, () => {
  gate.snapshot();
});

Deno.bench("health gate: isHeavy()", { group: "request path" }, () => {
  gate.isHeavy("qwen3:8b");
});

const metrics = new RouterMetrics();
const observation = {
  endpoint: "/v1/chat/completions",
  provider: "local",
  outcome: "primary",
  status: 200,
  durationSeconds: 0.012,
} as const;

Deno.bench("metrics: observeRequest()", { group: "request path" }, () => {
  metrics.observeRequest(observation);
});

Deno.bench("metrics: setSlot()", { group: "request path" }, () => {
  metrics.setSlot({ busy: false, queueDepth: 0 });
});
