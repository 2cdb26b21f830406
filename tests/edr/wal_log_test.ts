import assert from "node:assert/strict";
import fc from "fast-check";
import { EdrWriter } from "../../lib/edr/mod.ts";
import { sampleDraft, sampleInput } from "./sample_draft.ts";

const DAY = "2026-11-27";

/** Every file under `dir` (relative path → bytes), tmp/ left out. */
async function tree(dir: string, prefix = ""): Promise<Map<string, string>> {
  const files = new Map<string, string>();
  for await (const entry of Deno.readDir(`${dir}/${prefix}`)) {
    const path = prefix ? `${prefix}/${entry.name}` : entry.name;
    if (path === "tmp") continue;
    if (entry.isDirectory) { for (const [p, text] of await tree(dir, path)) files.set(p, text); }
    else files.set(path, await Deno.readTextFile(`${dir}/${path}`));
  }
  return files;
}

/** Commits `bursts` (records committed together) into a writer with or without zeros ahead. */
async function writeBursts(dir: string, zeroAhead: boolean, bursts: number[], copyLiveTo?: string) {
  const writer = await EdrWriter.open(dir, { zeroAhead, validate: false, log: () => {} });
  let n = 0;
  for (const size of bursts) {
    await Promise.all(Array.from({ length: size }, () => {
      n++;
      const draft = sampleDraft({ request_id: `req_${n.toString(16).padStart(32, "0")}` });
      // Some records share an input, so both logs leave repeated inputs out the same way.
      return writer.commit(draft, n % 3 === 0 ? {} : { capturedInput: sampleInput(`prompt ${n % 5}`) });
    }));
  }
  const liveSize = (await Deno.stat(`${dir}/wal/${DAY}.log`)).size;
  if (copyLiveTo) {
    // What a kill -9 now would leave: the log as the live writer holds it.
    await Deno.mkdir(`${copyLiveTo}/wal`, { recursive: true });
    await Deno.copyFile(`${dir}/wal/${DAY}.log`, `${copyLiveTo}/wal/${DAY}.log`);
  }
  const heads = writer.heads();
  await writer.close();
  return { liveSize, heads };
}

Deno.test("zeros written ahead of the WAL leave the same artifacts as plain appends", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "edr_zero_ahead_" });
  try {
    await t.step(
      "random bursts: same log, files and inputs once closed; same chain after a crash",
      async () => {
        let run = 0;
        await fc.assert(
          fc.asyncProperty(
            fc.array(fc.integer({ min: 1, max: 16 }), { minLength: 1, maxLength: 5 }),
            async (bursts) => {
              run++;
              const zeros = await writeBursts(`${root}/z${run}`, true, bursts, `${root}/z${run}-crash`);
              const plain = await writeBursts(`${root}/p${run}`, false, bursts, `${root}/p${run}-crash`);
              assert.deepEqual(await tree(`${root}/z${run}`), await tree(`${root}/p${run}`));
              assert.deepEqual(zeros.heads, plain.heads);
              // Only the live log differs: the fast path keeps zeros past its end, the plain one ends at its last line.
              const logBytes = (await Deno.stat(`${root}/p${run}/wal/${DAY}.log`)).size;
              assert.equal(plain.liveSize, logBytes);
              assert.ok(zeros.liveSize > logBytes, "zeros are written ahead of the live log's end");
              // Recovery of either crash image restores the same files and continues the same chain.
              for (const image of [`${root}/z${run}-crash`, `${root}/p${run}-crash`]) {
                const reopened = await EdrWriter.open(image, { validate: false, log: () => {} });
                assert.deepEqual(reopened.heads(), plain.heads);
                assert.equal(reopened.stats().recovery.records, bursts.reduce((a, b) => a + b, 0));
                await reopened.close();
                assert.deepEqual(await tree(image), await tree(`${root}/p${run}`));
              }
            },
          ),
          { numRuns: 4 },
        );
      },
    );
  } finally {
    await Deno.remove(root, { recursive: true });
  }
});
