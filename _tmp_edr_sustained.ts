import { EdrWriter } from "./lib/edr/mod.ts";
import { sampleDraft } from "./tests/edr/sample_draft.ts";
for (const validate of [true, false]) {
  const dir = Deno.makeTempDirSync();
  const w = await EdrWriter.open(dir, { validate, log: console.error });
  const N = 20000, C = 64;
  let next = 0;
  const t0 = performance.now();
  await Promise.all(Array.from({ length: C }, async () => { while (next++ < N) await w.commit(sampleDraft()); }));
  const t1 = performance.now();
  await w.close();
  const t2 = performance.now();
  console.log({ validate, commits_per_s: Math.round(N / ((t1 - t0) / 1000)), end_to_end_per_s: Math.round(N / ((t2 - t0) / 1000)), stats: { ...w.stats(), recovery: undefined } });
  Deno.removeSync(dir, { recursive: true });
}
