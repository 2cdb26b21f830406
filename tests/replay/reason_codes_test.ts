import assert from "node:assert/strict";
import {
  ALL_REASON_CODES,
  CHECK_ORDER,
  CHECK_REASON,
  EXIT_CODES,
  REASON_CODES,
  REPLAY_STATUSES,
  worstStatus,
} from "../../lib/replay/mod.ts";

// The seed README's contract, copied here on purpose: changing the code must fail this test.
const SEED_CONTRACT = {
  REFUSED: ["SIDE_EFFECTS_NOT_ALLOWED", "NETWORK_NOT_ALLOWED"],
  ERROR: ["REPLAY_NOT_REPLAYABLE", "INPUT_POINTER_MISSING", "PROVIDER_NOT_SUPPORTED", "EXECUTION_ERROR"],
  DIVERGED: [
    "INPUT_HASH_MISMATCH",
    "OUTPUT_HASH_MISMATCH",
    "DECISION_CORE_MISMATCH",
    "EDR_HASH_MISMATCH",
    "ENVIRONMENT_MISMATCH",
  ],
};

Deno.test("the replay reason-code contract is locked to the seed's list", async (t) => {
  await t.step("each status carries exactly the seed's codes", () => {
    assert.deepEqual(Object.keys(REASON_CODES).sort(), Object.keys(SEED_CONTRACT).sort());
    for (const [status, codes] of Object.entries(SEED_CONTRACT)) {
      assert.deepEqual(
        new Set(REASON_CODES[status as keyof typeof REASON_CODES]),
        new Set(codes),
        `${status} codes changed`,
      );
    }
    assert.equal(ALL_REASON_CODES.length, 11);
    assert.equal(new Set(ALL_REASON_CODES).size, 11);
  });

  await t.step("the contract cannot be changed at run time", () => {
    assert.ok(Object.isFrozen(REASON_CODES));
    for (const list of Object.values(REASON_CODES)) assert.ok(Object.isFrozen(list));
    assert.ok(Object.isFrozen(ALL_REASON_CODES));
    assert.throws(() => (REASON_CODES.REFUSED as unknown as string[]).push("NEW_CODE"));
  });

  await t.step("every check maps to a code of the contract and the codes are all reachable", () => {
    const used = new Set(CHECK_ORDER.map((c) => CHECK_REASON[c]));
    assert.deepEqual(used, new Set(ALL_REASON_CODES));
  });

  await t.step("the exit codes are 0 MATCH, 1 DIVERGED, 2 REFUSED, 3 ERROR, 64 usage", () => {
    assert.deepEqual({ ...EXIT_CODES }, { MATCH: 0, DIVERGED: 1, REFUSED: 2, ERROR: 3, USAGE: 64 });
    assert.deepEqual([...REPLAY_STATUSES], ["MATCH", "DIVERGED", "REFUSED", "ERROR"]);
    assert.equal(worstStatus("MATCH", "DIVERGED"), "DIVERGED");
    assert.equal(worstStatus("ERROR", "REFUSED"), "ERROR");
    assert.equal(worstStatus("MATCH", "MATCH"), "MATCH");
  });

  await t.step("the operator docs explain every code", async () => {
    const doc = await Deno.readTextFile(new URL("../../docs/replay-reason-codes.md", import.meta.url));
    for (const code of ALL_REASON_CODES) {
      assert.match(doc, new RegExp(`\`${code}\``), `${code} is not documented`);
    }
  });
});
