import assert from "node:assert/strict";
import {
  computeDecisionCoreHash,
  computeEdrHash,
  EDR_SCHEMA,
  type EdrRecord,
  sha256Hex,
  validateEdr,
} from "../../lib/edr/mod.ts";
import { sampleDraft } from "./sample_draft.ts";

// Changing the published schema must be a deliberate, reviewed act: update this pin together with the
// schema version and docs/edr-format.md.
// Moved on purpose for several local hosts (OLLAMA_HOST lists): optional `local_host` on the decision, the
// candidates and the attempts, and optional `decision_inputs.hosts`. Only optional members were added, so
// every record written before still validates and verifies under the same version 1.0.0.
const PINNED_SCHEMA_SHA256 = "9eafec9da7ad7bc2865dca771a82204a4238b712cfa330a17251285c6ffca9b2";

function sampleRecord(): EdrRecord {
  const draft = sampleDraft();
  const partial = {
    ...draft,
    sequence: 1,
    prev_edr_hash: null,
    decision_core_hash: computeDecisionCoreHash(draft),
  };
  return { ...partial, edr_hash: computeEdrHash(partial) };
}

Deno.test("EDR_v1.0.0 schema", async (t) => {
  await t.step("the schema file's bytes match the pinned hash", async () => {
    const bytes = await Deno.readFile(new URL("../../schemas/edr/EDR_v1.0.0.json", import.meta.url));
    assert.equal(sha256Hex(bytes), PINNED_SCHEMA_SHA256);
  });

  await t.step("the schema is 2020-12 with an $id and closes every object", () => {
    assert.equal(EDR_SCHEMA.$schema, "https://json-schema.org/draft/2020-12/schema");
    assert.match(String(EDR_SCHEMA.$id), /EDR_v1\.0\.0\.json$/);
    const open: string[] = [];
    const walk = (node: unknown, path: string) => {
      if (Array.isArray(node)) return node.forEach((n, i) => walk(n, `${path}/${i}`));
      if (node === null || typeof node !== "object") return;
      const obj = node as Record<string, unknown>;
      if (obj.type === "object" && obj.additionalProperties !== false) open.push(path);
      for (const [k, v] of Object.entries(obj)) walk(v, `${path}/${k}`);
    };
    walk(EDR_SCHEMA, "");
    assert.deepEqual(open, []);
  });

  await t.step("a complete record passes", () => {
    assert.deepEqual(validateEdr(sampleRecord()), { valid: true });
  });

  await t.step("an early-failure record with nothing decided passes", () => {
    const draft = sampleDraft({
      contract_hash: null,
      effective_contract: null,
      decision: { provider: null, model: null, protocol: null, path: "rejected" },
      decision_factors: [],
      constraints_applied: [],
      candidates: [],
      decision_inputs: {
        health: null,
        slot: null,
        features: null,
        keys: { anthropic: false, openai: false },
        authority: null,
      },
      attempts: [],
      input_hash: null,
      output_hash: null,
      usage: null,
      timings: { decide_ms: null, first_byte_ms: null, total_ms: 0.4 },
      environment: {
        router_version: "0.3.0",
        ollama_version: null,
        model_digest: null,
        seed: null,
        options: {},
      },
      failure: { type: "validation_error", stage: "parse", message: "messages is required" },
      replay: { replayable: false, required_inputs_pointer: null },
    });
    const partial = {
      ...draft,
      sequence: 3,
      prev_edr_hash: "0".repeat(64),
      decision_core_hash: "1".repeat(64),
    };
    assert.deepEqual(validateEdr({ ...partial, edr_hash: computeEdrHash(partial) }), { valid: true });
  });

  await t.step("authority, slot outcome and a fallback attempt pass", () => {
    const record = sampleRecord();
    record.decision_inputs.authority = {
      issued_by: "ops",
      scopes: ["route:cloud"],
      lease_id_sha256: "9".repeat(64),
      signed: true,
      ttl: 300,
    };
    record.slot = { heavy: true, outcome: "waited", waited_ms: 3.1, queue_depth_at_entry: 1 };
    record.attempts.unshift({
      provider: "local",
      model: "llama3.3:70b",
      status: null,
      duration_ms: 5000,
      error_code: "UPSTREAM_TIMEOUT",
      outcome: "fallback",
    });
    assert.deepEqual(validateEdr(record), { valid: true });
  });

  await t.step("the message-shape features are recorded as true or left out, never false", () => {
    const record = sampleRecord() as unknown as { decision_inputs: { features: Record<string, unknown> } };
    record.decision_inputs.features.has_late_system = true;
    record.decision_inputs.features.opens_with_assistant = true;
    assert.deepEqual(validateEdr(record), { valid: true });
    record.decision_inputs.features.opens_with_assistant = false;
    const result = validateEdr(record);
    assert.ok(!result.valid && result.errors.some((e) => e.startsWith("/decision_inputs/features")));
  });

  await t.step("an extra field anywhere is rejected and named", () => {
    const top = { ...sampleRecord(), extra: 1 };
    const topResult = validateEdr(top);
    assert.equal(topResult.valid, false);
    assert.ok(!topResult.valid && topResult.errors.some((e) => e.includes("(extra)")));
    const nested = sampleRecord() as unknown as { decision_inputs: { features: Record<string, unknown> } };
    nested.decision_inputs.features.prompt = "secret";
    const nestedResult = validateEdr(nested);
    assert.ok(
      !nestedResult.valid && nestedResult.errors.some((e) => e.startsWith("/decision_inputs/features")),
    );
  });

  await t.step("a hash that is not 64 lower-case hex digits is rejected", () => {
    for (const bad of ["A".repeat(64), "a".repeat(63), "sha256:" + "a".repeat(64)]) {
      const record = { ...sampleRecord(), edr_hash: bad };
      const result = validateEdr(record);
      assert.ok(!result.valid && result.errors.some((e) => e.startsWith("/edr_hash")), bad);
    }
  });

  await t.step("values outside the enums are rejected", () => {
    // These mutations break the types on purpose.
    // deno-lint-ignore no-explicit-any
    type Loose = any;
    const cases: Array<(r: Loose) => void> = [
      (r) => (r.decision.path = "sideways"),
      (r) => (r.side_effects = "some"),
      (r) => (r.failure = { type: "oops", stage: "parse", message: "" }),
      (r) => (r.failure = { type: "provider_error", stage: "later", message: "" }),
      (r) => (r.attempts[0].outcome = "maybe"),
      (r) => (r.slot = { heavy: true, outcome: "stolen", waited_ms: 0, queue_depth_at_entry: 0 }),
      (r) => (r.decision_inputs.health.state = "sick"),
      (r) => (r.decision_inputs.slot.when_busy = "panic"),
      (r) => (r.effective_contract.classification = "TOPSECRET"),
      (r) => (r.effective_contract.requires = ["telepathy"]),
      (r) => (r.effective_contract.provider_allowlist = ["azure"]),
    ];
    for (const mutate of cases) {
      const record: Loose = sampleRecord();
      mutate(record);
      assert.equal(validateEdr(record).valid, false, mutate.toString());
    }
  });
});
