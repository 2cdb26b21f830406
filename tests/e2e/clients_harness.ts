/**
 * What the real-client test files share: one `deno task serve` with a policy under which every provider
 * can take every case (the local model also sees images), the routing-contract header that forces one
 * provider, and a check of which fake upstream answered.
 */
import assert from "node:assert/strict";
import { BUILTIN_POLICY_SOURCE } from "../../lib/contract/mod.ts";
import { policyWith, type ServedRouter, startServeHealthy } from "./serve_harness.ts";

/** The providers every case runs against, in turn. */
export const PROVIDERS = ["local", "anthropic", "openai"] as const;
/** One of `PROVIDERS`. */
export type Provider = typeof PROVIDERS[number];

/** A 1×1 red PNG: the image the vision cases send. */
export const PNG_BASE64 =
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/** The JSON schema of the structured-output cases: the shape every fake answers in JSON mode. */
export const ANSWER_SCHEMA = {
  type: "object",
  properties: { answer: { type: "string" }, note: { type: "string" } },
  required: ["answer", "note"],
  additionalProperties: false,
} as const;

/** The JSON schema of the tools the tool cases offer (every fake calls them with a city). */
export const CITY_SCHEMA = {
  type: "object",
  properties: { city: { type: "string" } },
  required: ["city"],
  additionalProperties: false,
} as const;

/** Starts the router on the built-in policy, with the local model able to see images, once Ollama is fit. */
export function startClientsRouter(): Promise<ServedRouter> {
  const models = structuredClone(BUILTIN_POLICY_SOURCE.models) as unknown as {
    name: string;
    capabilities: string[];
  }[];
  for (const model of models) {
    if (model.name === "qwen3:8b") model.capabilities.push("vision");
  }
  return startServeHealthy({ policy: policyWith({ models, health: { probe_interval_ms: 100 } }) });
}

/** The headers that make the router serve a request with `provider` only. */
export function forceHeaders(provider: Provider): Record<string, string> {
  return { "x-routing-contract": JSON.stringify({ provider_allowlist: [provider] }) };
}

/** How many chat calls each fake upstream has received so far. */
function upstreamCalls(s: ServedRouter): Record<Provider, number> {
  return {
    local: s.ollama.requests.length,
    anthropic: s.anthropic.requests.filter((r) => r.path === "/v1/messages").length,
    openai: s.openai.requests.length,
  };
}

/** Runs `run` and asserts that `provider`'s fake, and only it, was called (at least once). */
export async function servedBy<T>(s: ServedRouter, provider: Provider, run: () => Promise<T>): Promise<T> {
  const before = upstreamCalls(s);
  const result = await run();
  const after = upstreamCalls(s);
  for (const p of PROVIDERS) {
    if (p === provider) assert.ok(after[p] > before[p], `${provider} served no call`);
    else assert.equal(after[p], before[p], `${p} was called, not only ${provider}`);
  }
  return result;
}

/** Sets every fake's mode for the duration of `run`, then back to normal. */
export async function withMode<T>(
  s: ServedRouter,
  mode: "cut_stream" | "parallel_tools",
  run: () => Promise<T>,
): Promise<T> {
  s.ollama.mode = mode;
  s.openai.mode = mode;
  s.anthropic.mode = mode;
  try {
    return await run();
  } finally {
    s.ollama.mode = "normal";
    s.openai.mode = "normal";
    s.anthropic.mode = "normal";
  }
}

/** Whether the last chat call `provider`'s fake received carried an image, in that upstream's own format. */
export function upstreamSawImage(s: ServedRouter, provider: Provider): boolean {
  const body = provider === "local"
    ? s.ollama.requests.at(-1)
    : provider === "openai"
    ? s.openai.requests.at(-1)
    : s.anthropic.requests.filter((r) => r.path === "/v1/messages").at(-1)?.body;
  const text = JSON.stringify(body ?? null);
  if (provider === "local") return text.includes(`"images":["${PNG_BASE64}"]`);
  if (provider === "openai") return text.includes(`"image_url"`) && text.includes(PNG_BASE64);
  return text.includes(`"type":"image"`) && text.includes(PNG_BASE64);
}
