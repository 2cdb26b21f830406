import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020";
import {
  BUILTIN_POLICY_SOURCE,
  loadPolicy,
  overlayBuiltinPolicy,
  parsePolicy,
  policyJsonSchema,
  policyServingProblem,
} from "../../lib/contract/mod.ts";

const schemaPath = new URL("../../schemas/policy/POLICY_v1.json", import.meta.url);

Deno.test("the server policy", async (t) => {
  await t.step("the published JSON Schema is generated from the zod schema and up to date", async () => {
    const published = JSON.parse(await Deno.readTextFile(schemaPath));
    const { $id: _id, title: _title, ...rest } = published;
    assert.deepEqual(rest, JSON.parse(JSON.stringify(policyJsonSchema())));
  });

  await t.step("the built-in policy validates against the published schema", async () => {
    const published = JSON.parse(await Deno.readTextFile(schemaPath));
    const validate = new Ajv2020({ strict: false, validateFormats: false }).compile(published);
    assert.ok(validate(BUILTIN_POLICY_SOURCE), JSON.stringify(validate.errors));
  });

  await t.step("without HI_POLICY the documented built-in default applies", async () => {
    const policy = await loadPolicy(undefined);
    assert.equal(policy.policy_version, BUILTIN_POLICY_SOURCE.policy_version);
    assert.equal(policy.defaults.classification, "INTERNAL");
    assert.deepEqual(policy.capture_classifications, ["PUBLIC", "INTERNAL"]);
    assert.equal(policy.authority.required, false);
  });

  await t.step("a bad policy field is named in the error", () => {
    assert.throws(
      () => parsePolicy({ policy_version: "x", slot: { when_busy: "sometimes" } }),
      /policy field slot\.when_busy is invalid/,
    );
    assert.throws(() => parsePolicy({ policy_version: "x", colour: 1 }), /policy field \(root\) is invalid/);
  });

  await t.step("a policy file that is not JSON says so", async () => {
    const path = await Deno.makeTempFile({ suffix: ".json" });
    try {
      await Deno.writeTextFile(path, "{ nope");
      await assert.rejects(() => loadPolicy(path), /is not valid JSON/);
    } finally {
      await Deno.remove(path);
    }
  });

  await t.step("a policy file that names only authority keeps the built-in models and defaults", async () => {
    const policy = await loadFile({
      policy_version: "ops-1",
      authority: { required: true },
    });
    assert.equal(policy.policy_version, "ops-1");
    assert.equal(policy.authority.required, true);
    assert.equal(policy.authority.max_ttl_s, 3600, "fields the section omits keep their defaults");
    assert.deepEqual(
      policy.models.map((m) => m.name),
      BUILTIN_POLICY_SOURCE.models.map((m) => m.name),
    );
    assert.equal(policy.defaults.local_router_model, "qwen3:8b");
  });

  await t.step("a models list in the file replaces the built-in list whole", async () => {
    const policy = await loadFile({
      policy_version: "ops-2",
      models: [{ name: "llama3.2:1b", provider: "local", context_window: 8192 }],
      defaults: { local_router_model: "llama3.2:1b" },
    });
    assert.deepEqual(policy.models.map((m) => m.name), ["llama3.2:1b"]);
    assert.equal(policy.defaults.local_router_model, "llama3.2:1b");
    assert.equal(policy.defaults.local_deep_model, "qwen3:32b", "other defaults keep the built-in value");
  });

  await t.step("objects merge key by key at any depth; arrays and values replace", () => {
    const merged = overlayBuiltinPolicy({
      policy_version: "ops-3",
      health: { circuit: { failure_threshold: 9 } },
      cloud_classifications: ["PUBLIC"],
    });
    const policy = parsePolicy(merged);
    assert.equal(policy.health.circuit.failure_threshold, 9);
    assert.equal(policy.health.circuit.cooldown_ms, 5000);
    assert.deepEqual(policy.cloud_classifications, ["PUBLIC"]);
    assert.equal(policy.models.length, BUILTIN_POLICY_SOURCE.models.length);
  });

  await t.step("a policy file without policy_version is refused and told to add one", async () => {
    await assert.rejects(() => loadFile({ authority: { required: true } }), /has no policy_version; add one/);
  });

  await t.step("a bad field in a partial policy file is still named", async () => {
    await assert.rejects(
      () => loadFile({ policy_version: "ops-4", authority: { max_ttl_s: "long" } }),
      /policy field authority\.max_ttl_s is invalid/,
    );
    await assert.rejects(
      () =>
        loadFile({ policy_version: "ops-4", models: [{ name: "x", provider: "moon", context_window: 1 }] }),
      /policy field models\.0\.provider is invalid/,
    );
  });

  await t.step("a policy file that is not an object is refused", async () => {
    await assert.rejects(() => loadFile([{ policy_version: "x" }]), /must hold one JSON object/);
  });

  await t.step("a policy under which no request could be served is refused at load", async () => {
    await assert.rejects(
      () => loadFile({ policy_version: "ops-5", models: [] }),
      /list no model of a provider in defaults\.provider_allowlist .*add one to models/,
    );
    await assert.rejects(
      () =>
        loadFile({
          policy_version: "ops-6",
          defaults: { provider_allowlist: ["openai"] },
          cloud_classifications: [],
        }),
      /cloud_classifications allows no classification/,
    );
  });

  await t.step("a cloud-only policy is servable only while a key for its providers is set", () => {
    const policy = parsePolicy(overlayBuiltinPolicy({
      policy_version: "ops-7",
      defaults: { provider_allowlist: ["anthropic"] },
    }));
    assert.equal(policyServingProblem(policy, { anthropic: true, openai: false }), null);
    assert.match(
      policyServingProblem(policy, { anthropic: false, openai: true }) ?? "",
      /run only on anthropic, whose key is not set.*set ANTHROPIC_API_KEY/,
    );
    const builtin = parsePolicy(BUILTIN_POLICY_SOURCE);
    assert.equal(policyServingProblem(builtin, { anthropic: false, openai: false }), null);
  });
});

/** Writes `source` to a temporary policy file and loads it as HI_POLICY would. */
async function loadFile(source: unknown) {
  const path = await Deno.makeTempFile({ suffix: ".json" });
  try {
    await Deno.writeTextFile(path, JSON.stringify(source));
    return await loadPolicy(path);
  } finally {
    await Deno.remove(path);
  }
}
