import assert from "node:assert/strict";
import { join } from "node:path";
import type { EdrRecord } from "../../lib/edr/mod.ts";
import {
  CHECK_ORDER,
  replayEdr,
  type ReplayOptions,
  replayPermissionArgs,
  type ReplayReport,
  reportHashHolds,
  validateReport,
} from "../../lib/replay/mod.ts";
import { startFakeOllama } from "../fakes/fake_ollama.ts";
import {
  buildDraft,
  commitAll,
  type DraftSpec,
  fakeDigest,
  fileOf,
  localOutputHash,
  makeArtifacts,
  sampleInput,
  tamper,
} from "./helpers.ts";

const CLI = new URL("../../cli/replay.ts", import.meta.url).pathname;

async function runCli(
  args: string[],
  env: Record<string, string>,
): Promise<{ code: number; stdout: string }> {
  const output = await new Deno.Command(Deno.execPath(), {
    args: ["run", "--allow-all", CLI, ...args],
    env: { ...env, HI_ARTIFACTS_DIR: "" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: output.code, stdout: new TextDecoder().decode(output.stdout) };
}

function failing(report: ReplayReport): string[] {
  return report.checks.filter((c) => c.status === "fail").map((c) => c.name);
}

Deno.test("replay re-checks a recorded request and reports every divergence", async (t) => {
  const fake = startFakeOllama();
  const art = await makeArtifacts();
  try {
    const digest = await fakeDigest("qwen3:8b");
    // Each record gets its own request, so each captured input can be damaged on its own.
    const specs: (Omit<DraftSpec, "policy" | "policyHash">)[] = [];
    const local = async (index: number, extra: Partial<DraftSpec> = {}) => {
      const input = sampleInput(index);
      const outputHash = await localOutputHash(fake.url, input);
      specs.push({ index, input, outputHash, modelDigest: digest, ...extra });
    };
    for (let i = 1; i <= 16; i++) await local(i);
    await local(17, { sideEffects: "write" });
    await local(18, { replayable: false });
    specs.push({ index: 19, served: "openai", input: sampleInput(19), outputHash: "b".repeat(64) });
    await local(20, { sideEffects: "external" });
    specs.push({ index: 21, served: "openai", input: sampleInput(21), outputHash: "b".repeat(64) });
    specs.push({ index: 22, input: sampleInput(22), outputHash: "c".repeat(64), modelDigest: digest });
    const drafts = specs.map((spec) => ({
      draft: buildDraft({ ...spec, policy: art.policy, policyHash: art.policyHash }),
      input: spec.input!,
    }));
    // A record made by a build that routed differently: sealed correctly, but today's decide() disagrees.
    const other = drafts[15].draft;
    other.decision_factors = [...other.decision_factors, "YESTERDAYS_EXTRA_FACTOR"];
    const records = await commitAll(art.dir, drafts);
    const byIndex = (i: number): EdrRecord => records[specs.findIndex((s) => s.index === i)];
    const path = (i: number) => fileOf(art.dir, byIndex(i));
    const opts: ReplayOptions = { artifactsDir: art.dir, ollamaUrl: fake.url };
    const replay = async (i: number, extra: Partial<ReplayOptions> = {}) =>
      (await replayEdr(path(i), { ...opts, ...extra })).report;

    await t.step(
      "an untouched local record replays as MATCH with a valid, hashed report on disk",
      async () => {
        const result = await replayEdr(path(1), opts);
        assert.equal(result.report.status, "MATCH", JSON.stringify(result.report.checks));
        assert.deepEqual(result.report.reason_codes, []);
        assert.deepEqual(validateReport(result.report), { valid: true });
        assert.ok(reportHashHolds(result.report));
        assert.deepEqual(result.report.checks.map((c) => c.name), [...CHECK_ORDER]);
        assert.ok(
          result.report.checks.filter((c) => c.name !== "provider").every((c) => c.status === "pass"),
        );
        const rec = byIndex(1);
        assert.equal(
          result.reportPath,
          join(art.dir, "replay", "2026", "11", "27", `${rec.decision_core_hash}.json`),
        );
        const onDisk = JSON.parse(await Deno.readTextFile(result.reportPath!));
        assert.deepEqual(onDisk, result.report);
        assert.equal(result.report.edr_path, `edr/2026/11/27/${rec.decision_core_hash}.json`);
      },
    );

    await t.step("the report never carries the prompt", async () => {
      const report = await replay(1);
      assert.ok(!JSON.stringify(report).includes("question number"));
    });

    await t.step(
      "a tampered output hash diverges on the record hash and is never sent to Ollama",
      async () => {
        await tamper(path(2), (r) => r.output_hash = "e".repeat(64));
        const before = fake.requests.length;
        const report = await replay(2);
        assert.equal(report.status, "DIVERGED");
        assert.deepEqual(report.reason_codes, ["EDR_HASH_MISMATCH"]);
        assert.deepEqual(validateReport(report), { valid: true });
        const output = report.checks.find((c) => c.name === "output_hash")!;
        assert.equal(output.status, "skipped");
        assert.match(output.observed!, /not executed: edr_hash does not hold/);
        assert.equal(fake.requests.length, before, "a tampered record makes no call to Ollama");
      },
    );

    await t.step("a tampered decision factor diverges on the record hash and the decision core", async () => {
      await tamper(path(3), (r) => (r.decision_factors as string[]).push("FORGED"));
      const report = await replay(3);
      assert.equal(report.status, "DIVERGED");
      assert.deepEqual(report.reason_codes, ["EDR_HASH_MISMATCH", "DECISION_CORE_MISMATCH"]);
      assert.deepEqual(failing(report), ["edr_hash", "decision", "decision_core_hash"]);
    });

    await t.step(
      "a tampered input hash diverges on the record, the input and the decision core",
      async () => {
        await tamper(path(4), (r) => r.input_hash = "f".repeat(64));
        const report = await replay(4);
        assert.deepEqual(report.reason_codes, [
          "EDR_HASH_MISMATCH",
          "INPUT_HASH_MISMATCH",
          "DECISION_CORE_MISMATCH",
        ]);
      },
    );

    await t.step("a tampered router version diverges on the record hash and the environment", async () => {
      await tamper(path(5), (r) => (r.environment as { router_version: string }).router_version = "0.0.1");
      const report = await replay(5);
      assert.deepEqual(report.reason_codes, ["EDR_HASH_MISMATCH", "ENVIRONMENT_MISMATCH"]);
    });

    await t.step(
      "tampering outside the decision core (usage, sequence, edr_hash) breaks the record hash",
      async () => {
        await tamper(path(6), (r) => (r.usage as { total_tokens: number }).total_tokens = 1);
        assert.deepEqual((await replay(6)).reason_codes, ["EDR_HASH_MISMATCH"]);
        await tamper(path(7), (r) => r.sequence = 999);
        assert.deepEqual((await replay(7)).reason_codes, ["EDR_HASH_MISMATCH"]);
        await tamper(path(8), (r) => r.edr_hash = "0".repeat(64));
        assert.deepEqual((await replay(8)).reason_codes, ["EDR_HASH_MISMATCH"]);
      },
    );

    await t.step("a removed captured input is an ERROR naming the missing pointer", async () => {
      await Deno.remove(join(art.dir, byIndex(9).replay.required_inputs_pointer!));
      const report = await replay(9);
      assert.equal(report.status, "ERROR");
      assert.deepEqual(report.reason_codes, ["INPUT_POINTER_MISSING"]);
      assert.deepEqual(validateReport(report), { valid: true });
    });

    await t.step(
      "a swapped captured input diverges on the input hash and is never sent to Ollama",
      async () => {
        const target = join(art.dir, byIndex(10).replay.required_inputs_pointer!);
        await Deno.writeTextFile(target, JSON.stringify(sampleInput(999)));
        const before = fake.requests.length;
        const report = await replay(10);
        assert.equal(report.status, "DIVERGED");
        assert.deepEqual(report.reason_codes, ["INPUT_HASH_MISMATCH"]);
        assert.equal(fake.requests.length, before, "an input that does not hash to the record is not run");
      },
    );

    await t.step("a pointer that climbs out with ../ is refused as a missing input", async () => {
      await tamper(
        path(11),
        (r) => (r.replay as { required_inputs_pointer: string }).required_inputs_pointer = "../outside.json",
      );
      const report = await replay(11);
      assert.equal(report.status, "ERROR");
      assert.deepEqual(report.reason_codes, ["INPUT_POINTER_MISSING"]);
      assert.match(
        report.checks.find((c) => c.name === "input_pointer")!.observed!,
        /leaves the artifacts folder/,
      );
    });

    await t.step("an absolute pointer is refused as a missing input", async () => {
      await tamper(
        path(12),
        (r) => (r.replay as { required_inputs_pointer: string }).required_inputs_pointer = "/etc/passwd",
      );
      const report = await replay(12);
      assert.deepEqual(report.reason_codes, ["INPUT_POINTER_MISSING"]);
    });

    await t.step(
      "a captured input that is a symlink to outside the artifacts folder is refused",
      async () => {
        const outside = await Deno.makeTempFile({ prefix: "hi-outside-" });
        try {
          await Deno.writeTextFile(outside, JSON.stringify(sampleInput(13)));
          const pointer = join(art.dir, byIndex(13).replay.required_inputs_pointer!);
          await Deno.remove(pointer);
          await Deno.symlink(outside, pointer);
          const report = await replay(13);
          assert.deepEqual(report.reason_codes, ["INPUT_POINTER_MISSING"]);
          assert.match(report.checks.find((c) => c.name === "input_pointer")!.observed!, /symlink/);
        } finally {
          await Deno.remove(outside);
        }
      },
    );

    await t.step("a changed model digest on the host diverges on the environment only", async () => {
      const saved = fake.models;
      fake.models = saved.map((m) => m.name === "qwen3:8b" ? { ...m, digest: "9".repeat(64) } : m);
      try {
        const report = await replay(14);
        assert.equal(report.status, "DIVERGED");
        assert.deepEqual(report.reason_codes, ["ENVIRONMENT_MISMATCH"]);
        assert.deepEqual(failing(report), ["model_digest"]);
      } finally {
        fake.models = saved;
      }
    });

    await t.step("a different Ollama version diverges on the environment", async () => {
      const other = startFakeOllama({ version: "0.13.0" });
      try {
        const report = (await replayEdr(path(15), { ...opts, ollamaUrl: other.url })).report;
        assert.deepEqual(report.reason_codes, ["ENVIRONMENT_MISMATCH"]);
        assert.deepEqual(failing(report), ["ollama_version"]);
      } finally {
        await other.close();
      }
    });

    await t.step(
      "a record today's decide() routes differently diverges on the decision core only",
      async () => {
        const report = await replay(16);
        assert.equal(report.status, "DIVERGED");
        assert.deepEqual(report.reason_codes, ["DECISION_CORE_MISMATCH"]);
        assert.deepEqual(failing(report), ["decision"]);
      },
    );

    await t.step("side effects are refused without --allow-side-effects and replayed with it", async () => {
      const refused = await replay(17);
      assert.equal(refused.status, "REFUSED");
      assert.deepEqual(refused.reason_codes, ["SIDE_EFFECTS_NOT_ALLOWED"]);
      assert.deepEqual(validateReport(refused), { valid: true });
      const allowed = await replay(17, { allowSideEffects: true });
      assert.equal(allowed.status, "MATCH");
      assert.deepEqual(allowed.flags, { allow_side_effects: true, allow_network: false });
    });

    await t.step("a record marked not replayable is an ERROR", async () => {
      const report = await replay(18);
      assert.equal(report.status, "ERROR");
      assert.deepEqual(report.reason_codes, ["REPLAY_NOT_REPLAYABLE"]);
    });

    await t.step("a cloud record is refused without --allow-network", async () => {
      const report = await replay(19);
      assert.equal(report.status, "REFUSED");
      assert.deepEqual(report.reason_codes, ["NETWORK_NOT_ALLOWED"]);
    });

    await t.step("a cloud record with --allow-network is checked but not re-executed", async () => {
      const before = fake.requests.length;
      const report = await replay(19, { allowNetwork: true });
      assert.equal(report.status, "ERROR");
      assert.deepEqual(report.reason_codes, ["PROVIDER_NOT_SUPPORTED"]);
      const byName = Object.fromEntries(report.checks.map((c) => [c.name, c.status]));
      assert.equal(byName.edr_hash, "pass");
      assert.equal(byName.input_hash, "pass");
      assert.equal(byName.decision, "pass");
      assert.equal(byName.output_hash, "skipped");
      assert.equal(fake.requests.length, before, "no upstream call is made for a cloud record");
      assert.deepEqual(validateReport(report), { valid: true });
    });

    await t.step("a tampered cloud record with --allow-network diverges", async () => {
      await tamper(path(21), (r) => r.output_hash = "1".repeat(64));
      const report = await replay(21, { allowNetwork: true });
      assert.equal(report.status, "DIVERGED");
      assert.deepEqual(report.reason_codes, ["EDR_HASH_MISMATCH"]);
    });

    await t.step("side effects are checked before the network: both flags are needed", async () => {
      const noFlags = await replay(20);
      assert.deepEqual(noFlags.reason_codes, ["SIDE_EFFECTS_NOT_ALLOWED"]);
    });

    await t.step("a model that now answers differently diverges on the output only", async () => {
      const report = await replay(22);
      assert.equal(report.status, "DIVERGED");
      assert.deepEqual(report.reason_codes, ["OUTPUT_HASH_MISMATCH"]);
    });

    await t.step("an unreachable local Ollama is an execution ERROR", async () => {
      const down = startFakeOllama();
      const url = down.url;
      await down.close();
      const report = (await replayEdr(path(1), { ...opts, ollamaUrl: url })).report;
      assert.equal(report.status, "ERROR");
      assert.deepEqual(report.reason_codes, ["EXECUTION_ERROR"]);
      assert.deepEqual(validateReport(report), { valid: true });
    });

    await t.step(
      "a malformed or schema-invalid file is an execution ERROR and writes no stray report",
      async () => {
        const bad = join(art.dir, "edr", "2026", "11", "27", "broken.json");
        await Deno.writeTextFile(bad, '{"edr_version": "1.0.0", "prompt": "secret words');
        const malformed = await replayEdr(bad, opts);
        assert.equal(malformed.report.status, "ERROR");
        assert.deepEqual(malformed.report.reason_codes, ["EXECUTION_ERROR"]);
        assert.equal(malformed.reportPath, null);
        assert.ok(!JSON.stringify(malformed.report).includes("secret words"));
        assert.deepEqual(validateReport(malformed.report), { valid: true });
        await Deno.writeTextFile(bad, JSON.stringify({ edr_version: "1.0.0" }));
        const invalid = (await replayEdr(bad, opts)).report;
        assert.deepEqual(invalid.reason_codes, ["EXECUTION_ERROR"]);
        assert.deepEqual((await replayEdr(join(art.dir, "nope.json"), opts)).report.reason_codes, [
          "EXECUTION_ERROR",
        ]);
        await Deno.remove(bad);
      },
    );

    await t.step(
      "a report day folder that is a symlink to elsewhere is refused before anything runs",
      async () => {
        const outside = await Deno.makeTempDir({ prefix: "hi-replay-day-" });
        const day = join(art.dir, "replay", "2026", "11", "27");
        const saved = `${day}.saved`;
        await Deno.rename(day, saved);
        await Deno.symlink(outside, day);
        try {
          const before = fake.requests.length;
          const result = await replayEdr(path(1), opts);
          assert.equal(result.report.status, "ERROR");
          assert.deepEqual(result.report.reason_codes, ["EXECUTION_ERROR"]);
          assert.match(
            result.report.message!,
            /<artifacts>\/replay\/2026\/11\/27 leads \(through a symlink\) to .*, outside/,
          );
          assert.equal(result.reportPath, null);
          assert.deepEqual(await Array.fromAsync(Deno.readDir(outside)), []);
          assert.equal(fake.requests.length, before);
          await Deno.remove(day);
          await Deno.symlink(join(outside, "missing"), day);
          const broken = await replayEdr(path(1), opts);
          assert.match(broken.report.message!, /is a broken symlink/);
        } finally {
          await Deno.remove(day);
          await Deno.rename(saved, day);
          await Deno.remove(outside, { recursive: true });
        }
      },
    );

    await t.step("a stored policy that was altered diverges on the decision core", async () => {
      const policyFile = join(art.dir, "policies", `${art.policyHash}.json`);
      const original = await Deno.readTextFile(policyFile);
      const changed = JSON.parse(original);
      changed.defaults.local_router_model = "qwen3:32b";
      await Deno.writeTextFile(policyFile, JSON.stringify(changed));
      try {
        const report = await replay(1);
        assert.equal(report.status, "DIVERGED");
        assert.deepEqual(report.reason_codes, ["DECISION_CORE_MISMATCH"]);
        assert.deepEqual(failing(report), ["policy_hash", "decision"]);
      } finally {
        await Deno.writeTextFile(policyFile, original);
      }
    });

    await t.step("a missing stored policy is a missing input", async () => {
      const policyFile = join(art.dir, "policies", `${art.policyHash}.json`);
      const original = await Deno.readTextFile(policyFile);
      await Deno.remove(policyFile);
      try {
        assert.deepEqual((await replay(1)).reason_codes, ["INPUT_POINTER_MISSING"]);
      } finally {
        await Deno.writeTextFile(policyFile, original);
      }
    });

    await t.step("the CLI exits 0 on MATCH and prints the report with --json", async () => {
      const { code, stdout } = await runCli([path(1), "--json"], { OLLAMA_HOST: fake.url });
      assert.equal(code, 0, stdout);
      const report = JSON.parse(stdout) as ReplayReport;
      assert.equal(report.status, "MATCH");
      assert.deepEqual(validateReport(report), { valid: true });
    });

    await t.step("the CLI exits 1 on DIVERGED, 2 on REFUSED and 3 on ERROR", async () => {
      const env = { OLLAMA_HOST: fake.url };
      assert.equal((await runCli([path(3)], env)).code, 1);
      assert.equal((await runCli([path(19)], env)).code, 2);
      assert.equal((await runCli([path(18), "--artifacts", art.dir], env)).code, 3);
      assert.equal((await runCli([path(19), "--allow-network"], env)).code, 3);
    });

    await t.step("the CLI exits 64 on a usage error", async () => {
      assert.equal((await runCli([], {})).code, 64);
      assert.equal((await runCli(["--bogus", path(1)], {})).code, 64);
      assert.equal((await runCli([path(1), path(2)], {})).code, 64);
    });

    await t.step("--all replays a tree, prints a summary table and exits with the worst status", async () => {
      const { code, stdout } = await runCli(["--all", join(art.dir, "edr")], { OLLAMA_HOST: fake.url });
      assert.equal(code, 3, stdout);
      assert.match(stdout, /MATCH\s+\d+/);
      assert.match(stdout, /DIVERGED\s+\d+/);
      assert.match(stdout, /EDR_HASH_MISMATCH\s+\d+/);
    });

    await t.step(
      "the launcher grants read of the artifacts, write of replay/ and the local Ollama only",
      () => {
        const args = replayPermissionArgs({
          artifactsDir: art.dir,
          target: path(1),
          ollamaUrl: fake.url,
          allowNetwork: false,
        });
        assert.ok(args.includes(`--allow-net=127.0.0.1:${fake.port}`));
        assert.ok(args.includes(`--allow-write=${join(art.dir, "replay")}`));
        assert.ok(args.includes(`--allow-read=${art.dir}`));
        const withNet = replayPermissionArgs({
          artifactsDir: art.dir,
          target: path(1),
          ollamaUrl: fake.url,
          allowNetwork: true,
        });
        assert.ok(
          withNet.includes(`--allow-net=127.0.0.1:${fake.port},api.openai.com:443,api.anthropic.com:443`),
        );
      },
    );
  } finally {
    await fake.close();
    await Deno.remove(art.dir, { recursive: true });
  }
});
