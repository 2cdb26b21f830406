import assert from "node:assert/strict";
import { Ajv2020 } from "ajv/dist/2020";
import { BUILTIN_POLICY_SOURCE, loadPolicy, parsePolicy, policyJsonSchema } from "../../lib/contract/mod.ts";

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
});
