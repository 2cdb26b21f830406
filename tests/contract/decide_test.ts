import assert from "node:assert/strict";
import fc from "fast-check";
import {
  BUILTIN_POLICY_SOURCE,
  decide,
  type DecisionInput,
  effectiveContract,
  parsePolicy,
  type RoutingContract,
} from "../../lib/contract/mod.ts";
import { plainFeatures } from "./features.ts";

const policy = parsePolicy(BUILTIN_POLICY_SOURCE);
const installed = [
  { name: "qwen3:8b", digest: "a".repeat(64), parameter_size_b: 8.2 },
  { name: "qwen3:32b", digest: "b".repeat(64), parameter_size_b: 32.8 },
];

function input(
  overrides: Partial<Omit<DecisionInput, "contract">> & { contract?: RoutingContract } = {},
): DecisionInput {
  const { contract, ...rest } = overrides;
  return {
    contract: effectiveContract(contract, policy),
    policy,
    health: { state: "fit", reasons: [], installed },
    slot: { busy: false, queue_depth: 0, max_queue: 8, when_busy: "wait" },
    features: plainFeatures(),
    keys: { anthropic: true, openai: true },
    ...rest,
  };
}

const unfit = { state: "unfit" as const, reasons: ["OLLAMA_UNREACHABLE"], installed };

Deno.test("decide() routes by the contract", async (t) => {
  await t.step("interactive work goes to the local router model first, cloud after", () => {
    const d = decide(input());
    assert.deepEqual(d.candidates.map((c) => `${c.provider}/${c.model}`), [
      "local/qwen3:8b",
      "anthropic/claude-sonnet-4-5",
      "openai/gpt-4o-mini",
    ]);
    assert.ok(d.factors.includes("LATENCY_INTERACTIVE_ROUTER_MODEL"));
  });

  await t.step("batch work goes to the heavy local deep model", () => {
    const d = decide(input({ contract: { latency: "batch" } }));
    assert.deepEqual(d.candidates[0], { provider: "local", model: "qwen3:32b", heavy: true });
  });

  await t.step("SENSITIVE runs only locally and fails closed with 503 when local is unfit", () => {
    const d = decide(input({ contract: { classification: "SENSITIVE" }, health: unfit }));
    assert.equal(d.candidates.length, 0);
    assert.equal(d.rejection?.status, 503);
    assert.equal(d.rejection?.code, "LOCAL_UNAVAILABLE_FOR_SENSITIVE");
  });

  await t.step("when local is unfit the cloud follows in allowlist order", () => {
    const d = decide(
      input({ health: unfit, contract: { provider_allowlist: ["openai", "anthropic", "local"] } }),
    );
    assert.deepEqual(d.candidates.map((c) => c.provider), ["openai", "anthropic"]);
    assert.ok(d.factors.includes("FALLBACK_TO_CLOUD"));
  });

  await t.step("a cloud provider without a key is never a candidate", () => {
    const d = decide(input({ health: unfit, keys: { anthropic: false, openai: true } }));
    assert.deepEqual(d.candidates.map((c) => c.provider), ["openai"]);
    assert.ok(d.constraints.includes("no_key:anthropic"));
  });

  await t.step("nothing left is 503 NO_PROVIDER_AVAILABLE", () => {
    const d = decide(input({ health: unfit, keys: { anthropic: false, openai: false } }));
    assert.equal(d.rejection?.code, "NO_PROVIDER_AVAILABLE");
  });

  await t.step("requires filters models that lack a capability (images need vision)", () => {
    const d = decide(input({ features: { ...input().features, has_images: true } }));
    assert.deepEqual(d.candidates.map((c) => c.provider), ["anthropic", "openai"]);
    assert.ok(d.constraints.some((c) => c.startsWith("lacks:local/qwen3:8b")));
  });

  await t.step("max_cost_usd drops providers whose estimated cost is above it", () => {
    const d = decide(input({
      health: unfit,
      contract: { max_cost_usd: 0.001 },
      features: { ...input().features, estimated_prompt_tokens: 100, max_output_tokens: 100 },
    }));
    assert.deepEqual(d.candidates.map((c) => c.model), ["gpt-4o-mini"]);
    assert.ok(d.constraints.includes("cost_exceeds:anthropic/claude-sonnet-4-5"));
  });

  await t.step("the request contract cannot loosen the policy", () => {
    const strict = parsePolicy({
      ...BUILTIN_POLICY_SOURCE,
      defaults: { provider_allowlist: ["local", "openai"], classification_floor: "INTERNAL" },
      authority: { required: true },
    });
    const c = effectiveContract(
      { classification: "PUBLIC", provider_allowlist: ["anthropic", "openai"], authority_required: false },
      strict,
    );
    assert.equal(c.classification, "INTERNAL");
    assert.deepEqual(c.provider_allowlist, ["openai"]);
    assert.equal(c.authority_required, true);
  });

  await t.step("a busy heavy slot spills to the cloud when the policy says spill", () => {
    const d = decide(input({
      contract: { latency: "batch" },
      slot: { busy: true, queue_depth: 0, max_queue: 8, when_busy: "spill" },
    }));
    assert.equal(d.candidates[0].provider, "anthropic");
    assert.ok(d.factors.includes("SLOT_BUSY_SPILL"));
  });

  await t.step("a busy heavy slot is a 429 when the policy says refuse", () => {
    const d = decide(input({
      contract: { latency: "batch" },
      slot: { busy: true, queue_depth: 0, max_queue: 8, when_busy: "refuse" },
    }));
    assert.equal(d.rejection?.status, 429);
    assert.equal(d.rejection?.code, "SLOT_BUSY");
  });

  await t.step("a pinned model that is neither in the policy nor installed is a 404", () => {
    const d = decide(input({ features: { ...input().features, requested_model: "nope:1b" } }));
    assert.equal(d.rejection?.status, 404);
  });
});

const arbitraryInput = fc.record({
  classification: fc.constantFrom("PUBLIC", "INTERNAL", "SENSITIVE", "SECRET"),
  latency: fc.constantFrom("interactive", "batch"),
  allow: fc.subarray(["local", "anthropic", "openai"] as const, { minLength: 1 }),
  requires: fc.subarray(["tool_calls", "long_context", "json_mode", "vision"] as const),
  maxCost: fc.option(fc.double({ min: 0, max: 1, noNaN: true }), { nil: undefined }),
  state: fc.constantFrom("fit", "unfit", "unknown"),
  busy: fc.boolean(),
  queue: fc.nat(10),
  whenBusy: fc.constantFrom("wait", "spill", "refuse"),
  anthropic: fc.boolean(),
  openai: fc.boolean(),
  tools: fc.boolean(),
  images: fc.boolean(),
  tokens: fc.nat(300_000),
  model: fc.constantFrom("auto", "qwen3:8b", "qwen3:32b", "claude-sonnet-4-5", "gpt-4o-mini", "unknown:1b"),
}).map((a): DecisionInput =>
  input({
    contract: {
      classification: a.classification,
      latency: a.latency,
      provider_allowlist: [...a.allow],
      requires: [...a.requires],
      max_cost_usd: a.maxCost,
    },
    health: { state: a.state, reasons: a.state === "unfit" ? ["MEMORY_PRESSURE"] : [], installed },
    slot: { busy: a.busy, queue_depth: a.queue, max_queue: 8, when_busy: a.whenBusy },
    keys: { anthropic: a.anthropic, openai: a.openai },
    features: {
      requested_model: a.model,
      stream: false,
      has_tools: a.tools,
      has_images: a.images,
      json_mode: false,
      estimated_prompt_tokens: a.tokens,
      max_output_tokens: null,
    },
  })
);

Deno.test("decide() properties", async (t) => {
  await t.step("same inputs, same decision (determinism, also across a JSON round trip)", () => {
    fc.assert(
      fc.property(arbitraryInput, (i) => {
        const again = { ...JSON.parse(JSON.stringify({ ...i, policy: undefined })), policy: i.policy };
        assert.deepEqual(decide(i), decide(i));
        assert.deepEqual(decide(again), decide(i));
      }),
      { numRuns: 500 },
    );
  });

  await t.step("no SENSITIVE or SECRET decision ever names a cloud provider", () => {
    fc.assert(
      fc.property(arbitraryInput, (i) => {
        if (i.contract.classification !== "SENSITIVE" && i.contract.classification !== "SECRET") return;
        for (const c of decide(i).candidates) assert.equal(c.provider, "local");
      }),
      { numRuns: 1000 },
    );
  });

  await t.step("every candidate is allowed by the contract, and a rejection has no candidates", () => {
    fc.assert(
      fc.property(arbitraryInput, (i) => {
        const d = decide(i);
        for (const c of d.candidates) assert.ok(i.contract.provider_allowlist.includes(c.provider));
        if (d.rejection) assert.equal(d.candidates.length, 0);
        else assert.ok(d.candidates.length > 0);
      }),
      { numRuns: 500 },
    );
  });
});

Deno.test("decide() routes fields only some providers honour", async (t) => {
  const withFields = (provider_fields: string[]) => ({ ...input().features, provider_fields });

  await t.step("logprobs skips local and Anthropic, each named as a constraint, and OpenAI serves", () => {
    const d = decide(input({ features: withFields(["logprobs", "top_logprobs"]) }));
    assert.deepEqual(d.candidates.map((c) => c.provider), ["openai"]);
    assert.ok(
      d.constraints.includes("field_unsupported:local:logprobs,top_logprobs"),
      d.constraints.join(" "),
    );
    assert.ok(d.constraints.includes("field_unsupported:anthropic:logprobs,top_logprobs"));
    assert.ok(d.factors.includes("FALLBACK_TO_CLOUD"));
  });

  await t.step("reasoning_effort keeps local and OpenAI and skips Anthropic", () => {
    const d = decide(input({ features: withFields(["reasoning_effort"]) }));
    assert.deepEqual(d.candidates.map((c) => c.provider), ["local", "openai"]);
  });

  await t.step("a SENSITIVE request with logprobs is a 400 naming logprobs, not a 503 to retry", () => {
    const d = decide(
      input({ contract: { classification: "SENSITIVE" }, features: withFields(["logprobs"]) }),
    );
    assert.equal(d.rejection?.status, 400);
    assert.equal(d.rejection?.code, "UNSUPPORTED_FIELD");
    assert.equal(d.rejection?.param, "logprobs");
    assert.match(
      d.rejection!.message,
      /^logprobs is honoured only by openai, and SENSITIVE requests may not leave/,
    );
    assert.ok(d.constraints.includes("field_unsupported:local:logprobs"));
  });

  await t.step(
    "without an OpenAI key, or with OpenAI outside the allowlist, logprobs is a 400 saying which",
    () => {
      const noKey = decide(
        input({ keys: { anthropic: true, openai: false }, features: withFields(["logprobs"]) }),
      );
      assert.equal(noKey.rejection?.code, "UNSUPPORTED_FIELD");
      assert.match(noKey.rejection!.message, /no API key/);
      const allow = decide(
        input({ contract: { provider_allowlist: ["local", "anthropic"] }, features: withFields(["store"]) }),
      );
      assert.equal(allow.rejection?.param, "store");
      assert.match(allow.rejection!.message, /provider_allowlist excludes/);
    },
  );

  await t.step("a model pinned on Anthropic with verbosity is a 400 naming verbosity", () => {
    const d = decide(
      input({ features: { ...withFields(["verbosity"]), requested_model: "claude-sonnet-4-5" } }),
    );
    assert.equal(d.rejection?.param, "verbosity");
    assert.match(d.rejection!.message, /requested model runs on anthropic/);
  });

  await t.step(
    "local down with OpenAI able to honour the field is the usual 503, not a field refusal",
    () => {
      const d = decide(
        input({
          health: unfit,
          features: withFields(["reasoning_effort"]),
          keys: { anthropic: true, openai: false },
        }),
      );
      assert.equal(d.rejection?.code, "NO_PROVIDER_AVAILABLE");
    },
  );

  await t.step("a record without provider_fields (older builds) routes as before", () => {
    assert.deepEqual(decide(input()).candidates.length, 3);
    assert.deepEqual(decide(input({ features: withFields([]) })).candidates.length, 3);
  });
});

Deno.test("decide() keeps what Anthropic cannot honour away from it and records its rewrites", async (t) => {
  const features = (extra: Partial<DecisionInput["features"]>) => ({ ...input().features, ...extra });

  for (const field of ["seed", "frequency_penalty", "presence_penalty", "temperature", "top_p"]) {
    await t.step(`${field} skips Anthropic, named as a constraint, and OpenAI serves first`, () => {
      const d = decide(input({
        contract: { provider_allowlist: ["anthropic", "openai", "local"] },
        features: features({ provider_fields: [field] }),
      }));
      assert.deepEqual(d.candidates.map((c) => c.provider), ["openai", "local"]);
      assert.ok(d.constraints.includes(`field_unsupported:anthropic:${field}`), d.constraints.join(" "));
    });
  }

  await t.step("with only Anthropic allowed, seed is a 400 UNSUPPORTED_FIELD naming seed", () => {
    const d = decide(input({
      contract: { provider_allowlist: ["anthropic"] },
      features: features({ provider_fields: ["seed"] }),
    }));
    assert.equal(d.rejection?.status, 400);
    assert.equal(d.rejection?.code, "UNSUPPORTED_FIELD");
    assert.equal(d.rejection?.param, "seed");
    assert.match(d.rejection!.message, /^seed is honoured only by local or openai, and the effective/);
  });

  await t.step("a late system message with Anthropic a candidate records REWRITE_SYSTEM_HOISTED", () => {
    const d = decide(input({ features: features({ has_late_system: true }) }));
    assert.ok(d.factors.includes("REWRITE_SYSTEM_HOISTED"), d.factors.join(" "));
    assert.ok(!d.factors.includes("REWRITE_FIRST_TURN_USER"));
  });

  await t.step(
    "an assistant-first history with Anthropic a candidate records REWRITE_FIRST_TURN_USER",
    () => {
      const d = decide(input({ features: features({ opens_with_assistant: true }) }));
      assert.ok(d.factors.includes("REWRITE_FIRST_TURN_USER"), d.factors.join(" "));
      assert.ok(!d.factors.includes("REWRITE_SYSTEM_HOISTED"));
    },
  );

  await t.step("without Anthropic among the candidates no rewrite is recorded", () => {
    const shapes = features({ has_late_system: true, opens_with_assistant: true });
    for (
      const d of [
        decide(input({ contract: { provider_allowlist: ["local", "openai"] }, features: shapes })),
        decide(input({ keys: { anthropic: false, openai: true }, features: shapes })),
      ]
    ) {
      assert.ok(d.candidates.length > 0);
      assert.ok(!d.factors.some((f) => f.startsWith("REWRITE_")), d.factors.join(" "));
    }
  });

  await t.step("an ordinary request records no rewrite", () => {
    assert.ok(!decide(input()).factors.some((f) => f.startsWith("REWRITE_")));
  });
});
