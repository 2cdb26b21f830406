import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { type ReplayReport, reportHashHolds, sealReport, validateReport } from "../../lib/replay/mod.ts";

const SCHEMA_PATH = new URL("../../schemas/replay/REPLAY_REPORT_v1.0.0.json", import.meta.url);
// Pinned: a published contract. Change it only by publishing REPLAY_REPORT_v1.1.0 (or v2) beside it.
const SCHEMA_SHA256 = "ada431f61c21d3a9242b2fcc29a2da8ad7b21f4eb4e3ed92a9623a99abd6106f";

function sample(overrides: Partial<ReplayReport> = {}): ReplayReport {
  return sealReport({
    report_version: "1.0.0",
    status: "MATCH",
    reason_codes: [],
    message: null,
    edr_path: "edr/2026/11/27/" + "a".repeat(64) + ".json",
    request_id: "req_" + "0".repeat(32),
    decision_core_hash: "a".repeat(64),
    flags: { allow_side_effects: false, allow_network: false },
    checks: [{ name: "edr_hash", status: "pass", expected: "b".repeat(64), observed: "b".repeat(64) }],
    router_version: "0.3.0",
    replayed_at: "2026-11-28T09:00:00.000Z",
    ...overrides,
  });
}

Deno.test("the replay report schema is a pinned, strict contract", async (t) => {
  await t.step("the schema file's SHA-256 is pinned", async () => {
    const bytes = await Deno.readFile(SCHEMA_PATH);
    assert.equal(createHash("sha256").update(bytes).digest("hex"), SCHEMA_SHA256);
  });

  await t.step("the schema is JSON Schema 2020-12, closed, and uses no format keyword", async () => {
    const text = await Deno.readTextFile(SCHEMA_PATH);
    const schema = JSON.parse(text);
    assert.equal(schema.$schema, "https://json-schema.org/draft/2020-12/schema");
    assert.equal(schema.additionalProperties, false);
    assert.ok(!text.includes('"format"'));
  });

  await t.step("a well-formed report is valid and its hash holds", () => {
    const report = sample();
    assert.deepEqual(validateReport(report), { valid: true });
    assert.ok(reportHashHolds(report));
    assert.ok(!reportHashHolds({ ...report, status: "DIVERGED" }));
  });

  await t.step("unknown fields, unknown codes and mismatched status/codes are rejected", () => {
    assert.equal(validateReport({ ...sample(), extra: 1 }).valid, false);
    assert.equal(validateReport(sample({ reason_codes: ["NOT_A_CODE" as never] })).valid, false);
    assert.equal(validateReport(sample({ reason_codes: ["EDR_HASH_MISMATCH"] })).valid, false);
    assert.equal(validateReport(sample({ status: "DIVERGED", reason_codes: [] })).valid, false);
    assert.equal(
      validateReport(sample({ status: "DIVERGED", reason_codes: ["NETWORK_NOT_ALLOWED"] })).valid,
      false,
    );
    assert.equal(
      validateReport(
        sample({ status: "REFUSED", reason_codes: ["SIDE_EFFECTS_NOT_ALLOWED", "NETWORK_NOT_ALLOWED"] }),
      )
        .valid,
      false,
    );
    assert.equal(validateReport(sample({ status: "ERROR", reason_codes: ["EXECUTION_ERROR"] })).valid, true);
    const badCheck = sample({
      checks: [{ name: "edr_hash", status: "ok" as never, expected: null, observed: null }],
    });
    assert.equal(validateReport(badCheck).valid, false);
    assert.equal(validateReport(sample({ replayed_at: "yesterday" })).valid, false);
  });
});
