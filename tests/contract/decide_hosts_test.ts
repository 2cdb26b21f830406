/**
 * decide() with several local hosts: which host a local candidate runs on, in which order, and why the
 * others were skipped. Pure: the inputs are what the router records in decision_inputs.hosts.
 */
import assert from "node:assert/strict";
import {
  BUILTIN_POLICY_SOURCE,
  decide,
  type DecisionInput,
  effectiveContract,
  type HealthView,
  type LocalHostView,
  parsePolicy,
  type RoutingContract,
  type SlotView,
} from "../../lib/contract/mod.ts";
import { plainFeatures } from "./features.ts";

const policy = parsePolicy(BUILTIN_POLICY_SOURCE);
const H1 = "http://gpu1.lan:11434";
const H2 = "http://gpu2.lan:11434";
const small = { name: "qwen3:8b", digest: "a".repeat(64), parameter_size_b: 8.2 };
const big = { name: "qwen3:32b", digest: "b".repeat(64), parameter_size_b: 32.8 };
const fit = (installed = [small, big]): HealthView => ({ state: "fit", reasons: [], installed });
const down: HealthView = { state: "unfit", reasons: ["OLLAMA_UNREACHABLE"], installed: [small, big] };
const free: SlotView = { busy: false, queue_depth: 0, max_queue: 8, when_busy: "wait" };
const held = (when_busy: SlotView["when_busy"] = "wait", queue_depth = 0): SlotView => ({
  busy: true,
  queue_depth,
  max_queue: 2,
  when_busy,
});

function input(
  hosts: LocalHostView[],
  contract?: RoutingContract,
  overrides: Partial<DecisionInput> = {},
): DecisionInput {
  return {
    contract: effectiveContract(contract, policy),
    policy,
    // With several hosts these are the first host's (as recorded); decide() reads `hosts`.
    health: hosts[0].health,
    slot: hosts[0].slot,
    features: plainFeatures(),
    keys: { anthropic: true, openai: true },
    hosts,
    ...overrides,
  };
}

const route = (d: ReturnType<typeof decide>) =>
  d.candidates.map((c) => `${c.provider}${c.local_host ? `@${c.local_host}` : ""}/${c.model}`);

Deno.test("decide() chooses among several local hosts", async (t) => {
  await t.step("both fit: the first configured host, the second as the next local fallback", () => {
    const d = decide(
      input([{ host: H1, health: fit(), slot: free }, { host: H2, health: fit(), slot: free }]),
    );
    assert.deepEqual(route(d), [
      `local@${H1}/qwen3:8b`,
      `local@${H2}/qwen3:8b`,
      "anthropic/claude-sonnet-4-5",
      "openai/gpt-4o-mini",
    ]);
    assert.ok(d.factors.includes("LOCAL_FIT"));
    assert.ok(!d.factors.includes("LOCAL_HOST_SKIPPED"));
    assert.ok(!d.constraints.some((c) => c.startsWith("local_host_skipped:")));
  });

  await t.step("a model installed only on host 2 runs there; host 1 is named as skipped", () => {
    const d = decide(
      input([{ host: H1, health: fit([big]), slot: free }, { host: H2, health: fit([small]), slot: free }]),
    );
    assert.deepEqual(route(d).slice(0, 2), [`local@${H2}/qwen3:8b`, "anthropic/claude-sonnet-4-5"]);
    assert.ok(d.constraints.includes(`local_host_skipped:${H1}:LOCAL_MODEL_NOT_INSTALLED`));
    assert.ok(d.factors.includes("LOCAL_HOST_SKIPPED"));
  });

  await t.step("a pinned model installed only on host 2 is found there", () => {
    const pinned = { name: "llama3.2:1b", digest: "c".repeat(64), parameter_size_b: 1.2 };
    const base = input([{ host: H1, health: fit(), slot: free }, {
      host: H2,
      health: fit([small, pinned]),
      slot: free,
    }]);
    const d = decide({ ...base, features: { ...base.features, requested_model: "llama3.2:1b" } });
    assert.deepEqual(route(d), [`local@${H2}/llama3.2:1b`]);
    assert.ok(d.factors.includes("MODEL_PINNED_LOCAL_INSTALLED"));
  });

  await t.step("host 1 unfit: host 2 serves, and the record says why host 1 was passed over", () => {
    const d = decide(
      input([{ host: H1, health: down, slot: free }, { host: H2, health: fit(), slot: free }]),
    );
    assert.equal(route(d)[0], `local@${H2}/qwen3:8b`);
    assert.ok(d.constraints.includes(`local_host_skipped:${H1}:LOCAL_UNFIT+LOCAL_OLLAMA_UNREACHABLE`));
    assert.ok(!d.factors.includes("FALLBACK_TO_CLOUD"));
  });

  await t.step("SENSITIVE with every host unfit: the single-host refusal, 503 LOCAL_UNAVAILABLE", () => {
    const d = decide(
      input([{ host: H1, health: down, slot: free }, { host: H2, health: down, slot: free }], {
        classification: "SENSITIVE",
      }),
    );
    assert.equal(d.candidates.length, 0);
    assert.equal(d.rejection?.status, 503);
    assert.equal(d.rejection?.code, "LOCAL_UNAVAILABLE_FOR_SENSITIVE");
    assert.ok(d.factors.includes("LOCAL_UNFIT"));
  });

  await t.step("SENSITIVE stays on the local hosts: any fit host, never the cloud", () => {
    const d = decide(
      input([{ host: H1, health: down, slot: free }, { host: H2, health: fit(), slot: free }], {
        classification: "SENSITIVE",
      }),
    );
    assert.deepEqual(route(d), [`local@${H2}/qwen3:8b`]);
  });

  await t.step("every host unfit: cloud, recorded as a fallback to the cloud", () => {
    const d = decide(input([{ host: H1, health: down, slot: free }, { host: H2, health: down, slot: free }]));
    assert.deepEqual(route(d), ["anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"]);
    assert.ok(d.factors.includes("FALLBACK_TO_CLOUD"));
  });

  await t.step("heavy work goes first to the host whose slot is free, the busy one waits behind it", () => {
    const d = decide(
      input([{ host: H1, health: fit(), slot: held() }, { host: H2, health: fit(), slot: free }], {
        latency: "batch",
      }),
    );
    assert.deepEqual(route(d).slice(0, 3), [
      `local@${H2}/qwen3:32b`,
      `local@${H1}/qwen3:32b`,
      "anthropic/claude-sonnet-4-5",
    ]);
    assert.ok(!d.factors.includes("SLOT_BUSY_WAIT"));
  });

  await t.step("light work ignores the heavy slots: configured order", () => {
    const d = decide(
      input([{ host: H1, health: fit(), slot: held() }, { host: H2, health: fit(), slot: free }]),
    );
    assert.equal(route(d)[0], `local@${H1}/qwen3:8b`);
  });

  await t.step("refuse: a busy host is skipped while another is free; all busy is 429 SLOT_BUSY", () => {
    const some = decide(
      input([{ host: H1, health: fit(), slot: held("refuse") }, { host: H2, health: fit(), slot: free }], {
        latency: "batch",
      }),
    );
    assert.equal(route(some)[0], `local@${H2}/qwen3:32b`);
    assert.ok(some.constraints.includes(`local_host_skipped:${H1}:SLOT_BUSY`));
    const all = decide(
      input([{ host: H1, health: fit(), slot: held("refuse") }, {
        host: H2,
        health: fit(),
        slot: held("refuse"),
      }], {
        latency: "batch",
      }),
    );
    assert.equal(all.rejection?.status, 429);
    assert.equal(all.rejection?.code, "SLOT_BUSY");
  });

  await t.step("every queue full: spill to the cloud, or 429 SLOT_QUEUE_FULL when none may take it", () => {
    const hosts = [{ host: H1, health: fit(), slot: held("wait", 2) }, {
      host: H2,
      health: fit(),
      slot: held("wait", 2),
    }];
    const spill = decide(input(hosts, { latency: "batch" }));
    assert.deepEqual(route(spill), ["anthropic/claude-sonnet-4-5", "openai/gpt-4o-mini"]);
    assert.ok(spill.factors.includes("SLOT_QUEUE_FULL_SPILL"));
    const refused = decide(input(hosts, { latency: "batch", classification: "SENSITIVE" }));
    assert.equal(refused.rejection?.code, "SLOT_QUEUE_FULL");
  });

  await t.step("the same input gives the same decision (replay depends on it)", () => {
    const hosts = [{ host: H1, health: down, slot: held() }, { host: H2, health: fit([small]), slot: free }];
    assert.deepEqual(decide(input(hosts)), decide(structuredClone(input(hosts))));
  });
});
