/**
 * verify against hostile trees, through `deno task verify`: a forged huge sequence (in a record file or
 * a write-ahead log line) is a finding reported at once, not a loop; verify's own failure (a folder it
 * cannot read) exits 3, apart from findings (1) and usage errors (64); memory follows the day's real size.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { type EdrRecord } from "../../lib/edr/mod.ts";
import { verifyTree } from "../../lib/replay/mod.ts";
import { REPO_ROOT } from "../e2e/serve_harness.ts";
import { buildDraft, commitAll, makeArtifacts, sampleInput } from "./helpers.ts";

const RECORDS = 50;
const DAY = "2026/11/27";
const HUGE = 2_000_000_000;
/** Far longer than verify needs for 50 records; only a verify that loops on a forged sequence reaches it. */
const DEADLINE_MS = 60_000;

/** `deno task -q verify …`, ended (SIGTERM, which deno task passes on) if it outlives the deadline. */
async function verifyTask(args: string[]): Promise<{ code: number; output: string; timedOut: boolean }> {
  const abort = new AbortController();
  let timedOut = false;
  const timer = setTimeout(() => (timedOut = true, abort.abort()), DEADLINE_MS);
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["task", "-q", "verify", ...args],
      cwd: REPO_ROOT,
      env: { NO_COLOR: "1" },
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      signal: abort.signal,
    }).output();
    const text = new TextDecoder();
    return { code: out.code, output: text.decode(out.stdout) + text.decode(out.stderr), timedOut };
  } finally {
    clearTimeout(timer);
  }
}

Deno.test("verify stays fast and bounded on hostile trees, with distinct exit codes", async (t) => {
  const art = await makeArtifacts();
  try {
    const written: EdrRecord[] = await commitAll(
      art.dir,
      Array.from({ length: RECORDS }, (_, i) => ({
        draft: buildDraft({ index: i + 1, policy: art.policy, policyHash: art.policyHash }),
        input: sampleInput(i + 1),
      })),
    );
    const edrDir = join(art.dir, "edr");
    const wal = join(art.dir, "wal", `${written[0].timestamp.slice(0, 10)}.log`);

    await t.step("an intact tree exits 0", async () => {
      const { code, output } = await verifyTask([art.dir]);
      assert.equal(code, 0, output);
    });

    await t.step("a 23-byte file claiming sequence 2,000,000,000 is a finding at once (exit 1)", async () => {
      const forged = join(edrDir, DAY, "forged.json");
      await Deno.writeTextFile(forged, `{"sequence":${HUGE}}`);
      try {
        const { code, output, timedOut } = await verifyTask([art.dir]);
        assert.equal(timedOut, false, "verify looped on the forged sequence");
        assert.equal(code, 1, output);
        assert.match(output, /forged\.json claims sequence 2000000000/);
        // One finding for the whole forged gap, not one per sequence.
        assert.ok(output.split("\n").length < 20, output);
      } finally {
        await Deno.remove(forged);
      }
    });

    await t.step(
      "a write-ahead log line claiming sequence 2,000,000,000 is a finding at once (exit 1)",
      async () => {
        const saved = await Deno.readFile(wal);
        const line = {
          record: { sequence: HUGE, edr_hash: "e".repeat(64), decision_core_hash: "d".repeat(64) },
        };
        await Deno.writeTextFile(wal, JSON.stringify(line) + "\n", { append: true });
        try {
          const { code, output, timedOut } = await verifyTask([art.dir]);
          assert.equal(timedOut, false, "verify looped on the forged sequence");
          assert.equal(code, 1, output);
          assert.match(
            output,
            /sequences 52 to 1999999999 .* are missing, yet a line of wal\/.* claims sequence 2000000000/,
          );
        } finally {
          await Deno.writeFile(wal, saved);
        }
      },
    );

    await t.step("memory follows the day's real size, not the sequence it claims", async () => {
      const forged = join(edrDir, DAY, "forged.json");
      await Deno.writeTextFile(forged, `{"sequence":${HUGE}}`);
      try {
        const result = await verifyTree(edrDir);
        assert.equal(result.ok, false);
        // 163 bytes per slot, slots rounded up to a power of two of at least 1,024.
        assert.ok(result.peak_day_bytes <= 1024 * 163, `${result.peak_day_bytes} bytes`);
      } finally {
        await Deno.remove(forged);
      }
    });

    await t.step("a folder verify cannot read is its own failure: exit 3, naming the folder", async () => {
      // A symlink to itself cannot be opened by anyone, root included.
      const loop = join(edrDir, "2026", "11", "28");
      await Deno.symlink("28", loop);
      try {
        const { code, output } = await verifyTask([art.dir]);
        assert.equal(code, 3, output);
        assert.match(output, /verify could not finish: cannot read the folder .*2026\/11\/28/);
      } finally {
        await Deno.remove(loop);
      }
    });

    await t.step(
      "a day of 150,000 WAL lines whose files are gone: 10,000 findings listed, the rest counted",
      async () => {
        // Synthetic lines (identities only) stand in for a large day: verify reads nothing else of a line.
        const day = join(art.dir, "wal", "2026-11-26.log");
        const hex = (n: number, c: string) => n.toString(16).padStart(64, c);
        const lines: string[] = [];
        for (let s = 1; s <= 150_000; s++) {
          lines.push(
            JSON.stringify({
              record: { sequence: s, edr_hash: hex(s, "e"), decision_core_hash: hex(s, "d") },
            }),
          );
        }
        await Deno.writeTextFile(day, lines.join("\n") + "\n");
        try {
          const { code, output, timedOut } = await verifyTask([art.dir]);
          assert.equal(timedOut, false);
          assert.equal(code, 1, output.slice(-2000));
          assert.doesNotMatch(output, /Maximum call stack|Uncaught/);
          assert.match(output, /… and 140000 more finding\(s\), not listed/);
          assert.match(output, /150000 finding\(s\) in 50 record\(s\)/);
        } finally {
          await Deno.remove(day);
        }
      },
    );

    await t.step("a malformed --expect-head is a usage error (exit 64)", async () => {
      const { code, output } = await verifyTask([art.dir, "--expect-head", "not-a-hash"]);
      assert.equal(code, 64, output);
      assert.match(output, /--expect-head not-a-hash is not an edr_hash/);
    });
  } finally {
    await Deno.remove(art.dir, { recursive: true });
  }
});
