/** A realistic EDR draft for tests and benchmarks (every optional part filled in). */

import type { EdrDraft } from "../../lib/edr/mod.ts";
import { plainFeatures } from "../contract/features.ts";

let counter = 0;

/** Builds a valid draft; `overrides` replace top-level fields, and the request id is unique per call. */
export function sampleDraft(overrides: Partial<EdrDraft> = {}): EdrDraft {
  counter++;
  const requestId = "req_" + (Date.now().toString(16) + counter.toString(16)).padStart(32, "0").slice(-32);
  return {
    edr_version: "1.0.0",
    timestamp: "2026-11-27T12:00:00.123Z",
    request_id: requestId,
    endpoint: "/v1/chat/completions",
    stream: false,
    contract_hash: "a".repeat(64),
    policy_version: "builtin-2026-11-27",
    policy_hash: "b".repeat(64),
    effective_contract: {
      classification: "INTERNAL",
      latency: "interactive",
      max_cost_usd: null,
      requires: [],
      provider_allowlist: ["local", "anthropic", "openai"],
      model_preferences: [],
      authority_required: false,
    },
    decision: { provider: "local", model: "qwen3:8b", protocol: "ollama_chat", path: "primary" },
    decision_factors: ["CLASSIFICATION_INTERNAL", "LOCAL_FIT", "LATENCY_INTERACTIVE_ROUTER_MODEL"],
    constraints_applied: ["allowlist:local,anthropic,openai"],
    candidates: [
      { provider: "local", model: "qwen3:8b", heavy: false },
      { provider: "openai", model: "gpt-4o-mini", heavy: false },
    ],
    decision_inputs: {
      health: {
        state: "fit",
        reasons: [],
        age_ms: 412,
        circuit: "closed",
        ollama_version: "0.12.6",
        memory_used_pct: 41.5,
        swap_used_mb: 0,
        installed: [
          { name: "qwen3:8b", digest: "c".repeat(64), parameter_size_b: 8.2 },
          { name: "llama3.3:70b", digest: "d".repeat(64), parameter_size_b: 70.6 },
        ],
      },
      slot: { busy: false, queue_depth: 0, max_queue: 4, when_busy: "wait" },
      features: plainFeatures({ estimated_prompt_tokens: 12 }),
      keys: { anthropic: false, openai: true },
      authority: null,
    },
    attempts: [
      {
        provider: "local",
        model: "qwen3:8b",
        status: 200,
        duration_ms: 12.3,
        error_code: null,
        outcome: "ok",
      },
    ],
    slot: null,
    input_hash: "e".repeat(64),
    output_hash: "f".repeat(64),
    usage: { prompt_tokens: 10, completion_tokens: 9, total_tokens: 19 },
    timings: { decide_ms: 0.05, first_byte_ms: 3.2, total_ms: 4.1 },
    environment: {
      router_version: "0.3.0",
      ollama_version: "0.12.6",
      model_digest: "c".repeat(64),
      seed: 42,
      options: { temperature: 0, seed: 42 },
    },
    failure: null,
    side_effects: "none",
    replay: { replayable: true, required_inputs_pointer: null },
    ...overrides,
  };
}

/** A captured input shaped like a canonical ChatRequest. */
export function sampleInput(text = "say hi"): unknown {
  return { model: "auto", messages: [{ role: "user", content: text }], temperature: 0, seed: 42 };
}
