import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { ALL_REASON_CODES } from "../../lib/replay/mod.ts";

const SPEC = new URL("../../governance/CAES_SPEC.md", import.meta.url);
// Pinned: the governance spec is a contract. Change it only by publishing a new version and re-pinning.
// Re-pinned deliberately when §10 (checkpoints) was added at the end; §1–§9 keep the v1.0.0 pin below.
const CAES_SPEC_SHA256 = "43f95a244e7c3097530007d91f9d181da13d0f83b3913be45435f1df132d0f96";
/** The published v1.0.0 text (§1–§9), which later sections may follow but never change. */
const CAES_V1_0_0_SHA256 = "4af476209c9ee7a5e41c804533df7fe1a2bbeae2553dd3f988fb02dad5ae3e8d";

Deno.test("the CAES spec is pinned and states the replay contract", async (t) => {
  const bytes = await Deno.readFile(SPEC);
  const text = new TextDecoder().decode(bytes);

  await t.step("its SHA-256 is the pinned one", () => {
    assert.equal(createHash("sha256").update(bytes).digest("hex"), CAES_SPEC_SHA256);
  });

  await t.step("sections 1 to 9 are the published v1.0.0 text, byte for byte", () => {
    const cut = text.indexOf("\n## 10.");
    assert.ok(cut > 0, "section 10 is missing");
    const v1 = new TextEncoder().encode(text.slice(0, cut));
    assert.equal(createHash("sha256").update(v1).digest("hex"), CAES_V1_0_0_SHA256);
  });

  await t.step("it states the checkpoint anchor and its limits", () => {
    assert.match(text, /^## 10\. Anchors: signed checkpoints of each day's head$/m);
    assert.match(text, /--expect-head/);
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
