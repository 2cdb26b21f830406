/**
 * docs/security.md's table of reason codes gives, for each code, an example block that produces it; these
 * steps send each example through `checkAuthority` under the policy the page names (authority required,
 * no issuers listed, max_ttl_s 3600), in the body and in the x-authority header, so the page cannot drift
 * from the code.
 */
import assert from "node:assert/strict";
import {
  authorityPolicySchema,
  type AuthorityResult,
  checkAuthority,
  LeaseStore,
} from "../../lib/authority/mod.ts";

const PAGE = await Deno.readTextFile(new URL("../../docs/security.md", import.meta.url));

/** The rows of the reason-code table: the code and its example cell. */
function codeRows(): { code: string; example: string }[] {
  const start = PAGE.search(/^\| Code +\| Meaning/m);
  assert.notEqual(start, -1, "docs/security.md has a table of reason codes");
  const rows: { code: string; example: string }[] = [];
  for (const line of PAGE.slice(start).split("\n").slice(2)) {
    if (!line.startsWith("|")) break;
    const cells = line.split(" | ");
    rows.push({ code: cells[0].match(/`(\w+)`/)![1], example: cells.at(-1)! });
  }
  return rows;
}

/** The refusal's code, or "ok". */
async function codeOf(result: Promise<AuthorityResult>): Promise<string> {
  const settled = await result;
  return settled.ok ? "ok" : settled.code;
}

Deno.test("every example block in docs/security.md produces the code it is listed for", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "authority_doc_" });
  const leases = await LeaseStore.open(dir);
  try {
    const policy = authorityPolicySchema.parse({});
    const options = (header?: string) => ({
      required: true,
      neededScope: "chat:completions" as const,
      policy,
      now: Date.now(),
      leases,
      secrets: {},
      header,
    });
    const rows = codeRows();
    assert.equal(rows.length, 10, "one row per reason code");
    for (const { code, example } of rows) {
      await t.step(code, async () => {
        if (code === "AUTHORITY_MISSING") {
          assert.equal(await codeOf(checkAuthority(null, options())), code);
          return;
        }
        const blocks = [...example.matchAll(/`(\{[^`]*\}|\d+)`/g)].map((m) => JSON.parse(m[1]));
        assert.ok(blocks.length > 0, `the ${code} row gives an example block`);
        for (const block of blocks) {
          // A replay needs a first use that is accepted.
          if (code === "LEASE_REPLAY") assert.equal(await codeOf(checkAuthority(block, options())), "ok");
          assert.equal(await codeOf(checkAuthority(block, options())), code, JSON.stringify(block));
          assert.equal(await codeOf(checkAuthority(undefined, options(JSON.stringify(block)))), code);
        }
      });
    }
  } finally {
    await leases.close();
    await Deno.remove(dir, { recursive: true });
  }
});
