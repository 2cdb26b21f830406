/**
 * verify at scale: writes N records in one UTC day with the real EdrWriter (WAL, files, captured inputs),
 * then runs `deno task verify` on them as a user would, and reports records/s and the verify process's
 * peak RSS (VmHWM, read from /proc while it runs). Not part of `deno task bench` (it takes minutes):
 *
 *   deno run -A bench/verify_scale.ts [records=1000000] [--keep DIR]
 *
 * The figures go in docs/edr-format.md ("verify at a million records a day").
 */
import { parseArgs } from "node:util";
import { EdrWriter } from "../lib/edr/mod.ts";
import { sampleDraft, sampleInput } from "../tests/edr/sample_draft.ts";

const { positionals, values } = parseArgs({
  args: Deno.args,
  allowPositionals: true,
  options: { keep: { type: "string" } },
});
const total = Number(positionals[0] ?? 1_000_000);
if (!Number.isSafeInteger(total) || total < 1) {
  console.error(
    "usage: deno run -A bench/verify_scale.ts [records] [--keep DIR]; records is a positive integer",
  );
  Deno.exit(64);
}
const dir = values.keep ?? await Deno.makeTempDir({ prefix: "verify_scale_" });
const repo = new URL("../", import.meta.url).pathname;

let existing = 0;
try {
  for await (const _ of Deno.readDir(`${dir}/edr/2026/11/27`)) existing++;
} catch {
  // A fresh folder.
}
if (existing < total) {
  const writer = await EdrWriter.open(dir, { validate: false, log: () => {} });
  const started = performance.now();
  const inFlight = 256;
  for (let done = existing; done < total;) {
    const n = Math.min(inFlight, total - done);
    await Promise.all(Array.from({ length: n }, (_, i) => {
      const index = done + i;
      const draft = sampleDraft({ request_id: "req_" + index.toString(16).padStart(32, "0") });
      return writer.commit(draft, { capturedInput: sampleInput(`question ${index % 1000}`) });
    }));
    done += n;
    if (done % 100_000 === 0) console.error(`written ${done}/${total}`);
  }
  await writer.close();
  const seconds = (performance.now() - started) / 1000;
  console.log(`wrote ${total - existing} records in ${seconds.toFixed(1)} s with the EdrWriter`);
}

const child = new Deno.Command(Deno.execPath(), {
  args: ["task", "-q", "verify", "--json", dir],
  cwd: repo,
  stdout: "piped",
  stderr: "inherit",
}).spawn();
// deno task runs verify as its child: watch every process of the tree for its high-water mark.
let peakKb = 0;
const watch = setInterval(() => {
  for (const entry of Deno.readDirSync("/proc")) {
    if (!/^\d+$/.test(entry.name)) continue;
    try {
      const status = Deno.readTextFileSync(`/proc/${entry.name}/status`);
      const cmdline = Deno.readTextFileSync(`/proc/${entry.name}/cmdline`);
      if (!cmdline.includes("cli/verify.ts")) continue;
      const hwm = Number(/VmHWM:\s+(\d+)/.exec(status)?.[1] ?? 0);
      if (hwm > peakKb) peakKb = hwm;
    } catch {
      // The process ended meanwhile.
    }
  }
}, 200);
const started = performance.now();
const output = await child.output();
clearInterval(watch);
const seconds = (performance.now() - started) / 1000;
const result = JSON.parse(new TextDecoder().decode(output.stdout));
console.log(
  `verify: exit ${output.code}, ${result.records} records, ${result.findings.length} findings, ` +
    `${seconds.toFixed(1)} s = ${Math.round(result.records / seconds)} records/s, ` +
    `peak RSS ${Math.round(peakKb / 1024)} MB, chain columns ${
      Math.round(result.peak_day_bytes / 1048576)
    } MB`,
);
if (values.keep === undefined) await Deno.remove(dir, { recursive: true });
