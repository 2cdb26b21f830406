/**
 * Crash-test child: commits EDRs forever from several concurrent loops and prints
 * `<sequence> <decision_core_hash>` only after `commit` resolved (the record is durable). The parent
 * SIGKILLs it at a random moment.
 */

import { EdrWriter } from "../../lib/edr/mod.ts";
import { sampleDraft, sampleInput } from "./sample_draft.ts";

const dir = Deno.args[0];
const writer = await EdrWriter.open(dir, { log: () => {} });
const encoder = new TextEncoder();
let n = 0;

async function loop(worker: number): Promise<void> {
  while (true) {
    const request_id = "req_" + crypto.randomUUID().replaceAll("-", "");
    const options = worker % 2 === 0 ? { capturedInput: sampleInput(`input ${n++ % 5}`) } : {};
    const record = await writer.commit(sampleDraft({ request_id }), options);
    Deno.stdout.writeSync(encoder.encode(`${record.sequence} ${record.decision_core_hash}\n`));
  }
}

await Promise.all(Array.from({ length: 8 }, (_, i) => loop(i)));
