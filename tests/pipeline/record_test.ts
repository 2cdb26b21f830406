/**
 * recordDraft() is a pure function of what happened to a request. Given the facts of four scenarios written
 * out by hand, it gives the drafts the request path made for them before it was reshaped (the golden files
 * of golden_drafts_test.ts), and the same facts always give the same draft without being changed.
 */
import assert from "node:assert/strict";
import { providerKeys } from "../../lib/config/mod.ts";
import { BUILTIN_POLICY_SOURCE, decide, effectiveContract, parsePolicy } from "../../lib/contract/mod.ts";
import type { EdrAttempt, EdrDraft } from "../../lib/edr/mod.ts";
import { openAIDialect } from "../../lib/pipeline/dialects.ts";
import { canonicalJson, sha256Hex } from "../../lib/edr/mod.ts";
import { recordDraft, type RecordFacts } from "../../lib/pipeline/record.ts";
import { requestFeatures } from "../../lib/pipeline/request_features.ts";
import { HeavySlot } from "../../lib/slot/mod.ts";
import { fakeHealth, stableDraft } from "./fakes.ts";

const policy = parsePolicy(BUILTIN_POLICY_SOURCE);
const POLICY_REF = { version: policy.policy_version, hash: "0".repeat(64) };
const USAGE = { prompt_tokens: 3, completion_tokens: 2, total_tokens: 5 };

/** The facts of an admitted and decided request for `body`, before any attempt. */
function decided(body: Record<string, unknown>): RecordFacts & Record<string, unknown> {
  const chat = openAIDialect.parse(body);
  const text = canonicalJson(chat);
  const contract = effectiveContract(undefined, policy);
  const health = fakeHealth().snapshot();
  const slotSnapshot = new HeavySlot(policy.slot).snapshot();
  const features = requestFeatures(chat);
  const keys = Object.freeze(providerKeys(() => true));
  const decision = decide({ contract, policy, health, slot: slotSnapshot, features, keys });
  return {
    requestId: "req_X",
    receivedAtMs: Date.UTC(2026, 10, 30, 10, 0, 0),
    endpoint: "/v1/chat/completions",
    stream: chat.stream === true,
    chat,
    input: { text, hash: sha256Hex(text) },
    contract,
    capture: true,
    authority: null,
    features,
    health,
    slotSnapshot,
    hosts: null,
    keys,
    decision,
    decideMs: 0.5,
    attempts: [],
    slotOutcome: null,
    served: null,
    output: null,
    usage: null,
    firstByteMs: null,
    failure: null,
  };
}

function attempt(
  provider: EdrAttempt["provider"],
  model: string,
  outcome: EdrAttempt["outcome"],
  status: number | null,
  error_code: string | null = null,
): EdrAttempt {
  return { duration_ms: 2, error_code, model, outcome, provider, status };
}

const HELLO = { model: "auto", messages: [{ role: "user", content: "hello" }] };
const HELLO_WORLD = { content: "hello world", tool_calls: [], finish_reason: "stop" as const };

const scenarios: Record<string, () => RecordFacts> = {
  json_local: () => ({
    ...decided(HELLO),
    attempts: [attempt("local", "qwen3:8b", "ok", 200)],
    served: {
      provider: "local",
      model: "qwen3:8b",
      protocol: "ollama_chat",
      modelDigest: "sha256:aaaa",
      numCtx: 32768,
    },
    output: HELLO_WORLD,
    usage: USAGE,
  }),
  json_fallback: () => ({
    ...decided(HELLO),
    attempts: [
      attempt("local", "qwen3:8b", "fallback", 502, "UPSTREAM_CONNECT_FAILED"),
      attempt("anthropic", "claude-sonnet-4-5", "ok", 200),
    ],
    served: {
      provider: "anthropic",
      model: "claude-sonnet-4-5",
      protocol: "anthropic_messages",
      modelDigest: null,
      numCtx: null,
    },
    output: HELLO_WORLD,
    usage: USAGE,
  }),
  rejected_unknown_model: () => {
    const facts = decided({ ...HELLO, model: "no-such-model" });
    const rejection = facts.decision!.rejection!;
    return {
      ...facts,
      failure: {
        code: rejection.code,
        message: rejection.message,
        stage: "decide",
        type: "policy_rejection",
      },
    };
  },
  stream_cut_mid_stream: () => ({
    ...decided({ ...HELLO, stream: true }),
    attempts: [attempt("local", "qwen3:8b", "failed", 200, "UPSTREAM_STREAM_CUT")],
    served: {
      provider: "local",
      model: "qwen3:8b",
      protocol: "ollama_chat",
      modelDigest: "sha256:aaaa",
      numCtx: 32768,
    },
    failure: {
      code: "UPSTREAM_STREAM_CUT",
      message: "the upstream failed mid-stream (UPSTREAM_STREAM_CUT); retry the request",
      stage: "stream",
      type: "upstream_stream_cut",
    },
  }),
};

for (const [name, facts] of Object.entries(scenarios)) {
  Deno.test(`recordDraft: ${name} gives today's draft`, async () => {
    const golden = JSON.parse(await Deno.readTextFile(new URL(`./golden/${name}.json`, import.meta.url)));
    const { draft } = recordDraft(facts(), POLICY_REF, 7.25);
    assert.equal(draft.timings.total_ms, 7.25);
    assert.deepEqual(stableDraft(draft), golden.draft);
  });
}

Deno.test("recordDraft: pure — the same facts give the same draft and are left as they were", () => {
  const facts = scenarios.json_fallback();
  const before = structuredClone(facts);
  const first = recordDraft(facts, POLICY_REF, 3);
  const second = recordDraft(facts, POLICY_REF, 3);
  assert.deepEqual(first, second);
  assert.deepEqual(facts, before);
  // A captured request hands its canonical input to the writer with the draft.
  assert.equal(first.capturedInputCanonical?.hash, (first.draft as EdrDraft).input_hash);
  const uncaptured = recordDraft({ ...facts, capture: false }, POLICY_REF, 3);
  assert.equal(uncaptured.capturedInputCanonical, undefined);
  assert.equal(uncaptured.draft.replay.replayable, false);
});
