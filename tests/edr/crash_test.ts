import assert from "node:assert/strict";
import { EdrWriter } from "../../lib/edr/mod.ts";
import { assertChain, readDay } from "./chain_check.ts";

const REPO = new URL("../../", import.meta.url).pathname;
const CHILD = new URL("./crash_child.ts", import.meta.url).pathname;
const DAY = "2026-11-27";

/** Runs the child until it acknowledged at least `want` records, SIGKILLs it, and returns every ack it printed. */
async function runAndKill(dir: string, want: number): Promise<Array<{ sequence: number; hash: string }>> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", CHILD, dir],
    cwd: REPO,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const acks: Array<{ sequence: number; hash: string }> = [];
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let killed = false;
  while (true) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    let newline = buffer.indexOf("\n");
    while (newline !== -1) {
      const [sequence, hash] = buffer.slice(0, newline).split(" ");
      acks.push({ sequence: Number(sequence), hash });
      buffer = buffer.slice(newline + 1);
      newline = buffer.indexOf("\n");
    }
    if (!killed && acks.length >= want) {
      child.kill("SIGKILL");
      killed = true;
    }
  }
  const status = await child.status;
  const errors = await stderr;
  assert.ok(killed, `child exited before acknowledging ${want} records: ${errors}`);
  assert.equal(status.signal, "SIGKILL");
  return acks;
}

Deno.test("EDRs survive SIGKILL", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "edr_crash_" });
  let lastAcked = 0;

  for (const round of [1, 2, 3, 4]) {
    await t.step(`round ${round}: every acknowledged record is on disk and the chain verifies`, async () => {
      const acks = await runAndKill(dir, 40 + round * 20);
      assert.ok(acks.length > 0);
      assert.ok(Math.min(...acks.map((a) => a.sequence)) > lastAcked, "the new process continued the chain");
      lastAcked = Math.max(...acks.map((a) => a.sequence));

      const writer = await EdrWriter.open(dir, { log: () => {} });
      await writer.close();
      assert.equal(writer.stats().recovery.corrupt_lines, 0);
      assert.equal(writer.stats().recovery.chain_breaks, 0);

      const records = await readDay(dir, DAY);
      assertChain(records);
      const bySequence = new Map(records.map((r) => [r.sequence, r]));
      for (const ack of acks) {
        assert.equal(
          bySequence.get(ack.sequence)?.decision_core_hash,
          ack.hash,
          `acknowledged ${ack.sequence} is missing`,
        );
      }
      for (const r of records) {
        if (r.replay.required_inputs_pointer) await Deno.lstat(`${dir}/${r.replay.required_inputs_pointer}`);
      }
      assert.deepEqual([...Deno.readDirSync(`${dir}/tmp`)], [], "no half-written temp files remain");
    });
  }

  await Deno.remove(dir, { recursive: true });
});
