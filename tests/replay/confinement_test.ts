/**
 * Replay stays inside its artifacts folder and checks a record before it runs it (issue 15, item 6), on
 * records `deno task serve` wrote, through `deno task replay` as users run it: a `replay/` folder that is a
 * symlink to elsewhere gets no report, a record linked in from outside is not read, and a tampered record
 * never reaches Ollama.
 */
import assert from "node:assert/strict";
import { dirname, join } from "node:path";
import { edrPath, type EdrRecord } from "../../lib/edr/mod.ts";
import { validateReport } from "../../lib/replay/mod.ts";
import { runTask, startServeHealthy } from "../e2e/serve_harness.ts";

/** A stand-in Ollama that counts every request it gets (any path) and fails each one. */
function countingOllama(): { url: string; hits: () => number; close: () => Promise<void> } {
  let hits = 0;
  const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen: () => {} }, () => {
    hits++;
    return new Response("counting stand-in", { status: 500 });
  });
  return {
    url: `http://127.0.0.1:${(server.addr as Deno.NetAddr).port}`,
    hits: () => hits,
    close: () => server.shutdown(),
  };
}

/** Every file and folder under `dir`, relative, sorted. */
async function listTree(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (at: string, prefix: string): Promise<void> => {
    for await (const entry of Deno.readDir(at)) {
      out.push(prefix + entry.name);
      if (entry.isDirectory) await walk(join(at, entry.name), `${prefix}${entry.name}/`);
    }
  };
  await walk(dir, "");
  return out.sort();
}

Deno.test("replay stays inside the artifacts folder and checks a record before it runs it", async (t) => {
  const h = await startServeHealthy();
  const counter = countingOllama();
  const outside = await Deno.makeTempDir({ prefix: "hi-replay-outside-" });
  try {
    const { response } = await h.client.chat.completions
      .create({ model: "auto", messages: [{ role: "user", content: "replay me" }], seed: 3, temperature: 0 })
      .withResponse();
    const record = await h.record(response.headers.get("x-request-id")!);
    assert.equal(record.decision.provider, "local");
    const file = `${h.artifactsDir}/${edrPath(record)}`;
    const original = await Deno.readTextFile(file);
    const replay = async (target: string, env: Record<string, string> = {}) => {
      const { code, stdout, output } = await runTask(["replay", "--json", target], {
        OLLAMA_HOST: counter.url,
        HI_ARTIFACTS_DIR: h.artifactsDir,
        ...env,
      });
      let report;
      try {
        report = JSON.parse(stdout);
      } catch {
        assert.fail(`deno task replay printed no JSON report (exit ${code}): ${output}`);
      }
      assert.deepEqual(validateReport(report), { valid: true });
      return { code, report };
    };

    await t.step(
      "a replay/ folder that is a symlink to elsewhere: ERROR (exit 3), nothing written there, nothing run",
      async () => {
        await Deno.symlink(outside, join(h.artifactsDir, "replay"));
        try {
          const { code, report } = await replay(file);
          assert.equal(report.status, "ERROR");
          assert.equal(code, 3);
          assert.deepEqual(report.reason_codes, ["EXECUTION_ERROR"]);
          assert.match(report.message, /<artifacts>\/replay leads \(through a symlink\) to .*, outside/);
          assert.deepEqual(await listTree(outside), [], "no report or folder was written outside");
          assert.equal(counter.hits(), 0, "the replay stopped before calling Ollama");
        } finally {
          await Deno.remove(join(h.artifactsDir, "replay"));
        }
      },
    );

    await t.step("a record linked into edr/ from outside is refused (exit 3) and not run", async () => {
      const copy = join(outside, "copy.json");
      await Deno.writeTextFile(copy, original);
      const link = join(dirname(file), "linked.json");
      await Deno.symlink(copy, link);
      try {
        const { code, report } = await replay(link);
        assert.equal(report.status, "ERROR");
        assert.equal(code, 3);
        assert.deepEqual(report.reason_codes, ["EXECUTION_ERROR"]);
        assert.match(report.message, /resolves outside the artifacts folder/);
        assert.equal(report.request_id, null, "the record outside was not read");
        assert.equal(counter.hits(), 0);
      } finally {
        await Deno.remove(link);
        await Deno.remove(copy);
      }
    });

    await t.step(
      "a record whose model was edited is DIVERGED EDR_HASH_MISMATCH (exit 1) with zero calls to Ollama",
      async () => {
        const edited: EdrRecord = { ...record, decision: { ...record.decision, model: "qwen3:32b" } };
        await Deno.writeTextFile(file, JSON.stringify(edited));
        try {
          const { code, report } = await replay(file);
          assert.equal(report.status, "DIVERGED");
          assert.equal(code, 1);
          assert.ok(report.reason_codes.includes("EDR_HASH_MISMATCH"), report.reason_codes.join());
          assert.equal(counter.hits(), 0, "a tampered record is never sent to Ollama");
          const output = report.checks.find((c: { name: string }) => c.name === "output_hash");
          assert.equal(output.status, "skipped");
          assert.match(output.observed, /not executed/);
        } finally {
          await Deno.writeTextFile(file, original);
        }
      },
    );

    await t.step("the intact record does reach the stand-in (so zero calls above means none)", async () => {
      const { code, report } = await replay(file);
      assert.equal(report.status, "ERROR");
      assert.equal(code, 3);
      assert.ok(counter.hits() > 0);
    });

    await t.step("an artifacts folder reached through a symlink replays to MATCH (exit 0)", async () => {
      const linked = join(outside, "artifacts-link");
      await Deno.symlink(h.artifactsDir, linked);
      try {
        const { code, report } = await replay(`${linked}/${edrPath(record)}`, {
          HI_ARTIFACTS_DIR: linked,
          OLLAMA_HOST: h.ollama.url,
        });
        assert.equal(report.status, "MATCH", JSON.stringify(report.checks));
        assert.equal(code, 0);
        assert.equal(report.edr_path, edrPath(record));
        const written = join(
          h.artifactsDir,
          "replay",
          dirname(edrPath(record)).slice(4),
          `${record.decision_core_hash}.json`,
        );
        assert.equal(JSON.parse(await Deno.readTextFile(written)).report_hash, report.report_hash);
      } finally {
        await Deno.remove(linked);
      }
    });
  } finally {
    await counter.close();
    await h.close();
    await Deno.remove(outside, { recursive: true });
  }
});
