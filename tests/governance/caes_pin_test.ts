import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ALL_REASON_CODES } from "../../lib/replay/mod.ts";

const SPEC = new URL("../../governance/CAES_SPEC.md", import.meta.url);
// Pinned: the governance spec is a contract. Change it only by publishing a new version and re-pinning.
const CAES_SPEC_SHA256 = "4af476209c9ee7a5e41c804533df7fe1a2bbeae2553dd3f988fb02dad5ae3e8d";

Deno.test("the CAES spec is pinned and states the replay contract", async (t) => {
  const bytes = await Deno.readFile(SPEC);
  const text = new TextDecoder().decode(bytes);

  await t.step("its SHA-256 is the pinned one", () => {
    assert.equal(createHash("sha256").update(bytes).digest("hex"), CAES_SPEC_SHA256);
  });

  await t.step("it is version 1.0.0", () => {
    assert.match(text, /^# CAES: .*\(v1\.0\.0\)$/m);
  });

  await t.step("it lists every replay reason code the code exports", () => {
    for (const code of ALL_REASON_CODES) {
      assert.ok(text.includes(`\`${code}\``), `${code} missing from the spec`);
    }
  });
});
