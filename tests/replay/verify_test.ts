import assert from "node:assert/strict";
import { join } from "node:path";
import { computeEdrHash, edrPath, type EdrRecord } from "../../lib/edr/mod.ts";
import { type VerifyFinding, verifyTree } from "../../lib/replay/mod.ts";
import { buildDraft, commitAll, makeArtifacts, sampleInput } from "./helpers.ts";

const CLI = new URL("../../cli/verify.ts", import.meta.url).pathname;
const DAY = "2026/11/27";
const RECORDS = 1000;

function named(findings: VerifyFinding[], file: string | null, kind?: VerifyFinding["kind"]): boolean {
  return findings.some((f) =>
    (kind === undefined || f.kind === kind) && (f.file === file || f.message.includes(file ?? "\0"))
  );
}

Deno.test("verify proves a day of records intact and names every damaged record", async (t) => {
  const art = await makeArtifacts();
  try {
    const drafts = Array.from({ length: RECORDS }, (_, i) => ({
      draft: buildDraft({
        index: i + 1,
        policy: art.policy,
        policyHash: art.policyHash,
        input: sampleInput(i + 1),
      }),
      input: sampleInput(i + 1),
    }));
    const written = await commitAll(art.dir, drafts);
    const bySequence = new Map<number, EdrRecord>(written.map((r) => [r.sequence, r]));
    const edrDir = join(art.dir, "edr");
    const rel = (seq: number) => edrPath(bySequence.get(seq)!).slice("edr/".length);
    const abs = (seq: number) => join(edrDir, rel(seq));

    /** Applies a damage, verifies, then restores the tree exactly. */
    const damaged = async (
      seqs: number[],
      damage: () => Promise<void>,
      extra: string[] = [],
      options: Parameters<typeof verifyTree>[1] = {},
    ) => {
      const saved = await Promise.all(seqs.map(async (s) => [abs(s), await Deno.readFile(abs(s))] as const));
      try {
        await damage();
        return await verifyTree(edrDir, options);
      } finally {
        for (const path of extra) await Deno.remove(path).catch(() => {});
        for (const [path, bytes] of saved) await Deno.writeFile(path, bytes);
      }
    };
    const rewrite = async (seq: number, change: (r: EdrRecord) => void, rehash = false) => {
      const record = JSON.parse(await Deno.readTextFile(abs(seq))) as EdrRecord;
      change(record);
      if (rehash) record.edr_hash = computeEdrHash(record);
      await Deno.writeTextFile(abs(seq), JSON.stringify(record));
    };

    await t.step("a day of 1,000 records written by the EdrWriter is intact", async () => {
      assert.equal(written.length, RECORDS);
      const result = await verifyTree(edrDir);
      assert.deepEqual(result.findings, []);
      assert.equal(result.ok, true);
      assert.equal(result.records, RECORDS);
      assert.equal(result.days, 1);
    });

    await t.step("progress is reported once per record", async () => {
      let calls = 0;
      let last = [0, 0];
      await verifyTree(edrDir, { onProgress: (done, total) => (calls++, last = [done, total]) });
      assert.equal(calls, RECORDS);
      assert.deepEqual(last, [RECORDS, RECORDS]);
    });

    for (const seq of [1, 500, 999]) {
      await t.step(`deleting record ${seq} is reported as missing, by name`, async () => {
        const result = await damaged([seq], () => Deno.remove(abs(seq)));
        assert.equal(result.ok, false);
        const missing = result.findings.filter((f) => f.kind === "missing");
        assert.equal(missing.length, 1, JSON.stringify(result.findings));
        assert.equal(missing[0].sequence, seq);
        assert.equal(missing[0].file, rel(seq));
      });
    }

    await t.step("deleting the last record is caught through the write-ahead log's head", async () => {
      const result = await damaged([RECORDS], () => Deno.remove(abs(RECORDS)));
      assert.deepEqual(result.findings.map((f) => [f.kind, f.file, f.sequence]), [[
        "missing",
        rel(RECORDS),
        RECORDS,
      ]]);
    });

    await t.step("a log a router still holds (zeros written past its end) reads the same", async () => {
      const wal = join(art.dir, "wal", `${written[0].timestamp.slice(0, 10)}.log`);
      const size = (await Deno.stat(wal)).size;
      const file = await Deno.open(wal, { write: true, append: true });
      try {
        await file.write(new Uint8Array(64 * 1024));
        const intact = await verifyTree(edrDir);
        assert.deepEqual(intact.findings, []);
        const result = await damaged([RECORDS], () => Deno.remove(abs(RECORDS)));
        assert.deepEqual(result.findings.map((f) => [f.kind, f.sequence]), [["missing", RECORDS]]);
      } finally {
        await file.truncate(size);
        file.close();
      }
    });

    await t.step("without a write-ahead log a gap is still reported by sequence", async () => {
      const result = await damaged([10], () => Deno.remove(abs(10)), [], { walDir: null });
      assert.deepEqual(result.findings.map((f) => [f.kind, f.sequence]), [["missing", 10]]);
    });

    for (const seq of [1, 321, RECORDS]) {
      await t.step(`altering a field of record ${seq} is reported as altered, by name`, async () => {
        const result = await damaged([seq], () => rewrite(seq, (r) => r.usage!.total_tokens += 1));
        assert.equal(result.ok, false);
        assert.ok(named(result.findings, rel(seq), "altered"), JSON.stringify(result.findings));
        assert.ok(result.findings.every((f) => f.file === rel(seq)), JSON.stringify(result.findings));
      });
    }

    await t.step("altering a decision field is reported as altered on both hashes", async () => {
      const result = await damaged([42], () => rewrite(42, (r) => r.decision_factors.push("FORGED")));
      assert.equal(result.findings.filter((f) => f.kind === "altered" && f.file === rel(42)).length, 2);
    });

    await t.step("a record re-hashed after alteration breaks the chain and the WAL names it", async () => {
      const result = await damaged([77], () => rewrite(77, (r) => r.usage!.total_tokens += 1, true));
      assert.ok(named(result.findings, rel(77), "altered"), JSON.stringify(result.findings));
      assert.ok(named(result.findings, rel(78), "chain_broken"), JSON.stringify(result.findings));
    });

    await t.step("a copy of a record under another name is reported as a duplicate, by name", async () => {
      const copy = join(edrDir, DAY, `${"c".repeat(64)}.json`);
      const result = await damaged([], () => Deno.copyFile(abs(250), copy), [copy]);
      assert.deepEqual(
        result.findings.map((f) => [f.kind, f.file]),
        [["duplicate", `${DAY}/${"c".repeat(64)}.json`]],
      );
      assert.match(result.findings[0].message, new RegExp(rel(250)));
    });

    await t.step("swapping two records' sequence numbers is reported, naming both", async () => {
      const result = await damaged([300, 301], async () => {
        await rewrite(300, (r) => r.sequence = 301);
        await rewrite(301, (r) => r.sequence = 300);
      });
      assert.ok(named(result.findings, rel(300), "altered"));
      assert.ok(named(result.findings, rel(301), "altered"));
      assert.ok(named(result.findings, rel(300), "reordered"));
      assert.ok(named(result.findings, rel(301), "reordered"));
    });

    await t.step(
      "a swap with freshly computed hashes is still reported as reordered, naming both",
      async () => {
        const result = await damaged([600, 601], async () => {
          await rewrite(600, (r) => r.sequence = 601, true);
          await rewrite(601, (r) => r.sequence = 600, true);
        });
        assert.ok(
          !result.findings.some((f) => f.kind === "altered" && f.message.includes("edr_hash does not match")),
        );
        assert.ok(named(result.findings, rel(600), "reordered"), JSON.stringify(result.findings));
        assert.ok(named(result.findings, rel(601), "reordered"), JSON.stringify(result.findings));
      },
    );

    await t.step("a day's verify reads only that day: its folder, its log and its checkpoints", async () => {
      const other = join(edrDir, "2026", "11", "28");
      const moved = join(other, `${bySequence.get(5)!.decision_core_hash}.json`);
      const stray = join(edrDir, "stray.json");
      await Deno.mkdir(other, { recursive: true });
      await Deno.rename(abs(5), moved);
      await Deno.writeTextFile(stray, "not a record");
      try {
        const day = await verifyTree(edrDir, { day: DAY.replaceAll("/", "-") });
        assert.equal(day.records, RECORDS - 1);
        assert.equal(day.days, 1);
        assert.deepEqual(day.findings.map((f) => [f.kind, f.sequence]), [["missing", 5]]);
        const next = await verifyTree(edrDir, { day: "2026-11-28" });
        assert.equal(next.records, 1);
        assert.deepEqual(next.findings.map((f) => f.kind), ["misplaced"]);
        const whole = await verifyTree(edrDir);
        assert.equal(whole.records, RECORDS + 1);
        assert.ok(named(whole.findings, "stray.json"), JSON.stringify(whole.findings));
      } finally {
        await Deno.rename(moved, abs(5));
        await Deno.remove(other, { recursive: true });
        await Deno.remove(stray);
      }
    });

    await t.step("a record moved to another day's folder is reported as misplaced", async () => {
      const moved = join(edrDir, "2026", "11", "28", `${bySequence.get(5)!.decision_core_hash}.json`);
      const result = await damaged([5], async () => {
        await Deno.mkdir(join(edrDir, "2026", "11", "28"), { recursive: true });
        await Deno.rename(abs(5), moved);
      }, [moved]);
      await Deno.remove(join(edrDir, "2026", "11", "28"), { recursive: true });
      assert.ok(
        named(result.findings, `2026/11/28/${bySequence.get(5)!.decision_core_hash}.json`, "misplaced"),
      );
      assert.ok(named(result.findings, rel(5), "missing"));
    });

    await t.step("a file that is not JSON is reported as unreadable", async () => {
      const result = await damaged([9], () => Deno.writeTextFile(abs(9), "{not json"));
      assert.ok(named(result.findings, rel(9), "unreadable"));
    });

    await t.step("the verify CLI exits 0 on an intact tree and 1 on any finding", async () => {
      const run = async (args: string[]) => {
        const out = await new Deno.Command(Deno.execPath(), {
          args: ["run", "--allow-read", "--allow-env", CLI, ...args],
          stdout: "piped",
          stderr: "piped",
        }).output();
        return { code: out.code, stdout: new TextDecoder().decode(out.stdout) };
      };
      const ok = await run([edrDir]);
      assert.equal(ok.code, 0, ok.stdout);
      assert.match(ok.stdout, /intact: 1000 record/);
      const saved = await Deno.readFile(abs(123));
      await Deno.remove(abs(123));
      try {
        const bad = await run([edrDir, "--json"]);
        assert.equal(bad.code, 1);
        const report = JSON.parse(bad.stdout);
        assert.equal(report.findings[0].file, rel(123));
      } finally {
        await Deno.writeFile(abs(123), saved);
      }
      assert.equal((await run([join(art.dir, "nope")])).code, 64);
      const oneDay = await run([edrDir, "--day", DAY.replaceAll("/", "-")]);
      assert.equal(oneDay.code, 0, oneDay.stdout);
      assert.match(oneDay.stdout, /intact: 1000 record\(s\) on 2026-11-27 under /);
      const emptyDay = await run([edrDir, "--day", "2026-11-26"]);
      assert.match(emptyDay.stdout, /intact: 0 record\(s\) on 2026-11-26/);
      for (const bad of ["2026-11-31", "2026-13-01", "27.11.2026"]) {
        assert.equal((await run([edrDir, "--day", bad])).code, 64, bad);
      }
    });
  } finally {
    await Deno.remove(art.dir, { recursive: true });
  }
});
