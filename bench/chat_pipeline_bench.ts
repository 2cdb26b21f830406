/**
 * The router's own per-request CPU on the hot path, with the network and the disk taken out: a request
 * through ChatHandler against an in-memory adapter, with the EDR sealed exactly as the writer seals it
 * (canonical JSON, both hashes) but not written. `deno task bench`.
 */
import { BUILTIN_POLICY_SOURCE, parsePolicy } from "../lib/contract/mod.ts";
import { type EdrDraft, type EdrRecord, sealDraft } from "../lib/edr/mod.ts";
import { HealthGate } from "../lib/health/mod.ts";
import { ChatHandler, RouterMetrics } from "../lib/http/mod.ts";
import { openAIDialect } from "../lib/pipeline/dialects.ts";
import type { ChatResult } from "../lib/canonical/mod.ts";
import type { ProviderAdapter } from "../lib/providers/mod.ts";
import { HeavySlot } from "../lib/slot/mod.ts";

const policy = parsePolicy(BUILTIN_POLICY_SOURCE);
const answer: ChatResult = {
  model: "qwen3:8b",
  content: "Hello! How can I help you today?",
  tool_calls: [],
  finish_reason: "stop",
  usage: { prompt_tokens: 10, completion_tokens: 9, total_tokens: 19 },
};
const local: ProviderAdapter = {
  provider: "local",
  protocol: "ollama_chat",
  complete: () => Promise.resolve(answer),
  stream: () => Promise.reject(new Error("not used")),
};
let sequence = 0;
const sink = {
  health: () => ({ state: "ok" as const }),
  commit(draft: EdrDraft): Promise<EdrRecord> {
    return Promise.resolve(sealDraft(draft, ++sequence, null).record);
  },
};
const health = new HealthGate({
  ollamaUrl: "http://127.0.0.1:9",
  policy: policy.health,
  fetch: () => Promise.reject(new Error("no network in benches")),
});
const handler = new ChatHandler({
  policy,
  policyHash: "0".repeat(64),
  health,
  slot: new HeavySlot(policy.slot),
  adapters: { local },
  edr: sink,
  leases: { reserve: () => Promise.resolve("reserved" as const) },
  metrics: new RouterMetrics(),
  secrets: {},
  log: () => {},
});
const body = JSON.stringify({ model: "auto", messages: [{ role: "user", content: "Hello, who are you?" }] });

Deno.bench("one chat completion through the pipeline (no I/O)", async () => {
  const response = await handler.handle(
    new Request("http://router/v1/chat/completions", {
      method: "POST",
      headers: { "content-type": "application/json" },
      body,
    }),
    openAIDialect,
  );
  await response.arrayBuffer();
});
