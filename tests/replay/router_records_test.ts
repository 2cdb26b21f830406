/**
 * Replay on records `deno task serve` wrote, through `deno task replay` and `deno task verify` as users run
 * them: the local record re-executes to MATCH, the cloud record is refused without --allow-network, and
 * tampering with a written record is caught.
 */
import assert from "node:assert/strict";
import { validateReport } from "../../lib/replay/mod.ts";
import { edrPath, type EdrRecord } from "../../lib/edr/mod.ts";
import { runTask, startServe } from "../e2e/serve_harness.ts";

Deno.test("replaying what the router recorded", async (t) => {
  const h = await startServe();
  try {
    await h.waitForOutput(/local health fit/);
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
    const pathOf = (r: EdrRecord) => `${h.artifactsDir}/${edrPath(r)}`;
    const replay = async (record: EdrRecord, ...flags: string[]) => {
      const { code, stdout, output } = await runTask(
        ["replay", "--json", ...flags, pathOf(record)],
        { OLLAMA_HOST: h.ollama.url, HI_ARTIFACTS_DIR: h.artifactsDir },
      );
      let report;
      try {
        report = JSON.parse(stdout);
      } catch {
        assert.fail(`deno task replay printed no JSON report (exit ${code}): ${output}`);
      }
      return { code, report };
    };

    await t.step("the local record re-executes to MATCH (exit 0) with a schema-valid report", async () => {
      const { code, report } = await replay(localRecord);
      assert.equal(report.status, "MATCH", JSON.stringify(report.checks));
      assert.equal(code, 0);
      assert.deepEqual(validateReport(report), { valid: true });
    });

    await t.step("the cloud record is refused (exit 2) without --allow-network", async () => {
      const { code, report } = await replay(cloudRecord);
      assert.equal(report.status, "REFUSED");
      assert.equal(code, 2);
      assert.deepEqual(report.reason_codes, ["NETWORK_NOT_ALLOWED"]);
    });

    await t.step("with --allow-network the cloud record is checked but not re-executed", async () => {
      const { code, report } = await replay(cloudRecord, "--allow-network");
      assert.equal(report.status, "ERROR");
      assert.equal(code, 3);
      assert.deepEqual(report.reason_codes, ["PROVIDER_NOT_SUPPORTED"]);
    });

    await t.step("deno task verify finds the day's records intact", async () => {
      await h.records();
      const { code, stdout, output } = await runTask(["verify", "--json", `${h.artifactsDir}/edr`]);
      assert.equal(code, 0, output);
      const result = JSON.parse(stdout);
      assert.deepEqual(result.findings, []);
      assert.equal(result.records, 2);
    });

    await t.step("a tampered decision in a written record diverges (exit 1)", async () => {
      const tampered = { ...localRecord, decision_factors: [...localRecord.decision_factors, "FORGED"] };
      await Deno.writeTextFile(pathOf(localRecord), JSON.stringify(tampered));
      const { code, report } = await replay(localRecord);
      assert.equal(report.status, "DIVERGED");
      assert.equal(code, 1);
      assert.ok(report.reason_codes.includes("EDR_HASH_MISMATCH"));
      assert.ok(report.reason_codes.includes("DECISION_CORE_MISMATCH"));
    });
  } finally {
    await h.close();
  }
});
