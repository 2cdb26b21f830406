/**
 * Builds realistic artifacts for replay and verify tests: records sealed and written by the real
 * EdrWriter, captured inputs, a stored policy, and outputs produced by a local (fake) Ollama call.
 */
import { BUILTIN_POLICY_SOURCE, decide, parsePolicy, type Policy } from "../../lib/contract/mod.ts";
import {
  type EdrDraft,
  edrPath,
  type EdrRecord,
  EdrWriter,
  hashCanonical,
  outputHashOf,
  writePolicySnapshot,
} from "../../lib/edr/mod.ts";
import { OllamaAdapter } from "../../lib/providers/mod.ts";
import type { ChatRequest } from "../../lib/canonical/mod.ts";
import { ROUTER_VERSION } from "../../lib/version.ts";
import { plainFeatures } from "../contract/features.ts";

/** A temp artifacts folder with a stored policy. */
export interface Artifacts {
  dir: string;
  policy: Policy;
  policyHash: string;
}

/** Makes a temp artifacts folder and stores the built-in policy in it. */
export async function makeArtifacts(): Promise<Artifacts> {
  const dir = await Deno.makeTempDir({ prefix: "hi-replay-" });
  const policy = parsePolicy(BUILTIN_POLICY_SOURCE);
  const policyHash = await writePolicySnapshot(dir, policy);
  return { dir, policy, policyHash };
}

/** What kind of record to build. */
export interface DraftSpec {
  index: number;
  policy: Policy;
  policyHash: string;
  /** "local" (default) serves from qwen3:8b; "openai" serves from the cloud after the local host was unfit. */
  served?: "local" | "openai";
  sideEffects?: EdrDraft["side_effects"];
  replayable?: boolean;
  input?: ChatRequest;
  outputHash?: string | null;
  modelDigest?: string | null;
  ollamaVersion?: string | null;
  /** Day of the timestamp (default 2026-11-27). */
  day?: string;
}

/** The request every local record captures unless told otherwise. */
export function sampleInput(index: number): ChatRequest {
  return {
    model: "auto",
    messages: [{ role: "user", content: `question number ${index}` }],
    temperature: 0,
    seed: 42,
  };
}

/** A digest the shared fake Ollama reports for a model name. */
export async function fakeDigest(name: string): Promise<string> {
  const bytes = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(`fake-ollama:${name}`));
  return [...new Uint8Array(bytes)].map((b) => b.toString(16).padStart(2, "0")).join("");
}

/** Builds a draft whose decision is today's `decide()` on its recorded inputs. */
export function buildDraft(spec: DraftSpec): EdrDraft {
  const served = spec.served ?? "local";
  const input = spec.input ?? sampleInput(spec.index);
  const contract = {
    classification: "INTERNAL" as const,
    latency: "interactive" as const,
    max_cost_usd: null,
    requires: [],
    provider_allowlist: ["local" as const, "anthropic" as const, "openai" as const],
    model_preferences: [],
    authority_required: false,
  };
  const health = {
    state: served === "local" ? "fit" as const : "unfit" as const,
    reasons: served === "local" ? [] : ["OLLAMA_UNREACHABLE"],
    age_ms: 12,
    circuit: "closed" as const,
    ollama_version: "0.12.6",
    memory_used_pct: 41.5,
    swap_used_mb: 0,
    installed: [{ name: "qwen3:8b", digest: "d".repeat(64), parameter_size_b: 8.2 }],
  };
  const slot = { busy: false, queue_depth: 0, max_queue: 4, when_busy: "wait" as const };
  const features = plainFeatures({ estimated_prompt_tokens: 6 });
  const keys = { anthropic: false, openai: served === "openai" };
  const decision = decide({ contract, policy: spec.policy, health, slot, features, keys });
  const first = decision.candidates[0];
  const ms = String(spec.index % 1000).padStart(3, "0");
  const sec = String(Math.floor(spec.index / 1000) % 60).padStart(2, "0");
  const day = spec.day ?? "2026-11-27";
  return {
    edr_version: "1.0.0",
    timestamp: `${day}T12:00:${sec}.${ms}Z`,
    request_id: `req_${hashCanonical({ i: spec.index, day }).slice(0, 32)}`,
    endpoint: "/v1/chat/completions",
    stream: false,
    contract_hash: hashCanonical(contract),
    policy_version: spec.policy.policy_version,
    policy_hash: spec.policyHash,
    effective_contract: contract,
    decision: {
      provider: first.provider,
      model: first.model,
      protocol: first.provider === "local" ? "ollama_chat" : "openai_chat",
      path: first.provider === "local" ? "primary" : "fallback",
    },
    decision_factors: decision.factors,
    constraints_applied: decision.constraints,
    candidates: decision.candidates,
    decision_inputs: { health, slot, features, keys, authority: null },
    attempts: [{
      provider: first.provider,
      model: first.model,
      status: 200,
      duration_ms: 12.5,
      error_code: null,
      outcome: "ok",
    }],
    slot: null,
    input_hash: hashCanonical(input),
    output_hash: spec.outputHash === undefined ? "a".repeat(64) : spec.outputHash,
    usage: { prompt_tokens: 6, completion_tokens: 9, total_tokens: 15 },
    timings: { decide_ms: 0.05, first_byte_ms: 3.2, total_ms: 4.1 },
    environment: {
      router_version: ROUTER_VERSION,
      ollama_version: served === "local"
        ? (spec.ollamaVersion === undefined ? "0.12.6" : spec.ollamaVersion)
        : null,
      model_digest: served === "local" ? (spec.modelDigest === undefined ? null : spec.modelDigest) : null,
      seed: 42,
      options: { temperature: 0, seed: 42 },
    },
    failure: null,
    side_effects: spec.sideEffects ?? "none",
    replay: { replayable: spec.replayable ?? true, required_inputs_pointer: null },
  };
}

/** Runs the captured input against a local Ollama the way the router did and returns its output hash. */
export async function localOutputHash(
  ollamaUrl: string,
  input: ChatRequest,
  model = "qwen3:8b",
): Promise<string> {
  const adapter = new OllamaAdapter({ baseUrl: ollamaUrl });
  const controller = new AbortController();
  const result = await adapter.complete({ ...input, stream: false }, {
    model,
    signal: controller.signal,
    firstByteTimeoutMs: 30_000,
    totalTimeoutMs: 30_000,
    defaultMaxTokens: 1024,
  });
  return outputHashOf({
    content: result.content,
    tool_calls: result.tool_calls,
    finish_reason: result.finish_reason,
  });
}

/** Commits drafts through the real writer (with their captured inputs) and returns the records. */
export async function commitAll(
  dir: string,
  drafts: { draft: EdrDraft; input: ChatRequest | null }[],
): Promise<EdrRecord[]> {
  const writer = await EdrWriter.open(dir, { log: () => {} });
  try {
    const pending = drafts.map(({ draft, input }) =>
      writer.commit(draft, input === null ? {} : { capturedInput: input })
    );
    return await Promise.all(pending);
  } finally {
    await writer.close();
  }
}

/** Absolute path of a record's file. */
export function fileOf(dir: string, record: EdrRecord): string {
  return `${dir}/${edrPath(record)}`;
}

/** Reads, changes and rewrites a record file in place (no re-hashing: a tamper). */
export async function tamper(path: string, change: (record: Record<string, unknown>) => void): Promise<void> {
  const record = JSON.parse(await Deno.readTextFile(path));
  change(record);
  await Deno.writeTextFile(path, JSON.stringify(record));
}
