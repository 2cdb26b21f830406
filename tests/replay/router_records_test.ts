/**
 * Replay on records the real router wrote: the local record re-executes to MATCH, the cloud record is
 * refused without --allow-network, and tampering with a written record is caught.
 */
import assert from "node:assert/strict";
import { replayEdr, validateReport, verifyTree } from "../../lib/replay/mod.ts";
import { edrPath } from "../../lib/edr/mod.ts";
import { startHarness } from "../http/harness.ts";

Deno.test("replaying what the router recorded", async (t) => {
  const h = await startHarness();
  try {
    const local = await h.client.chat.completions
      .create({ model: "auto", messages: [{ role: "user", content: "replay me" }], seed: 3, temperature: 0 })
      .withResponse();
    h.ollama.mode = "error500";
    const cloud = await h.client.chat.completions
      .create({ model: "auto", messages: [{ role: "user", content: "cloud me" }] })
      .withResponse();
    h.ollama.mode = "normal";
    const localRecord = await h.record(local.response.headers.get("x-request-id")!);
    const cloudRecord = await h.record(cloud.response.headers.get("x-request-id")!);
    const pathOf = (r: typeof localRecord) => `${h.artifactsDir}/${edrPath(r)}`;
    const options = { artifactsDir: h.artifactsDir, ollamaUrl: h.ollama.url };

    await t.step("the local record re-executes to MATCH with a schema-valid report", async () => {
      const { report, reportPath } = await replayEdr(pathOf(localRecord), options);
      assert.equal(report.status, "MATCH", JSON.stringify(report.checks.filter((c) => c.status === "fail")));
      assert.deepEqual(validateReport(report), { valid: true });
      assert.ok(reportPath);
    });

    await t.step("the cloud record is refused without --allow-network", async () => {
      const { report } = await replayEdr(pathOf(cloudRecord), options);
      assert.equal(report.status, "REFUSED");
      assert.deepEqual(report.reason_codes, ["NETWORK_NOT_ALLOWED"]);
    });

    await t.step("with --allow-network the cloud record is checked but not re-executed", async () => {
      const { report } = await replayEdr(pathOf(cloudRecord), { ...options, allowNetwork: true });
      assert.equal(report.status, "ERROR");
      assert.deepEqual(report.reason_codes, ["PROVIDER_NOT_SUPPORTED"]);
    });

    await t.step("the day's records verify intact", async () => {
      await h.router.edr.flush();
      const result = await verifyTree(`${h.artifactsDir}/edr`, { walDir: `${h.artifactsDir}/wal` });
      assert.deepEqual(result.findings, []);
      assert.equal(result.records, 2);
    });

    await t.step("a tampered decision in a written record diverges", async () => {
      const tampered = { ...localRecord, decision_factors: [...localRecord.decision_factors, "FORGED"] };
      await Deno.writeTextFile(pathOf(localRecord), JSON.stringify(tampered));
      const { report } = await replayEdr(pathOf(localRecord), options);
      assert.equal(report.status, "DIVERGED");
      assert.ok(report.reason_codes.includes("EDR_HASH_MISMATCH"));
      assert.ok(report.reason_codes.includes("DECISION_CORE_MISMATCH"));
    });
  } finally {
    await h.close();
  }
});
