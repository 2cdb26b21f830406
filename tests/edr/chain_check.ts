/** Test helper: reads every EDR file of one day directory and checks the chain like a verifier would. */

import assert from "node:assert/strict";
import { computeDecisionCoreHash, computeEdrHash, type EdrRecord } from "../../lib/edr/mod.ts";

/** Parses every file under `edr/YYYY/MM/DD` (all must parse) and returns the records by sequence. */
export async function readDay(artifactsDir: string, day: string): Promise<EdrRecord[]> {
  const dir = `${artifactsDir}/edr/${day.replaceAll("-", "/")}`;
  const records: EdrRecord[] = [];
  for await (const entry of Deno.readDir(dir)) {
    assert.ok(entry.isFile && entry.name.endsWith(".json"), `unexpected entry ${entry.name}`);
    const record = JSON.parse(await Deno.readTextFile(`${dir}/${entry.name}`)) as EdrRecord;
    assert.equal(entry.name, `${record.decision_core_hash}.json`);
    records.push(record);
  }
  return records.sort((a, b) => a.sequence - b.sequence);
}

/** Asserts sequences 1..n without gaps, prev links, and both recomputed hashes. */
export function assertChain(records: EdrRecord[]): void {
  let prev: string | null = null;
  records.forEach((record, i) => {
    assert.equal(record.sequence, i + 1, "sequence has a gap or a duplicate");
    assert.equal(record.prev_edr_hash, prev, `prev_edr_hash of sequence ${record.sequence} does not link`);
    assert.equal(
      record.edr_hash,
      computeEdrHash(record),
      `edr_hash of sequence ${record.sequence} does not verify`,
    );
    assert.equal(record.decision_core_hash, computeDecisionCoreHash(record));
    prev = record.edr_hash;
  });
}
