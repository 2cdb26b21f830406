/**
 * An authority issuer whose HMAC secret variable is not set can verify nothing. The router still starts
 * (other issuers may verify), so the operator hears it once at startup, and a block from that issuer is
 * refused with a message that names the fix.
 */
import assert from "node:assert/strict";
import { policyWith, startServe } from "./serve_harness.ts";

Deno.test("serve names an issuer whose secret variable is unset, once, and refuses its blocks", async () => {
  const served = await startServe({
    policy: policyWith({
      authority: {
        required: true,
        issuers: [
          { id: "ops", hmac_secret_env: "HI_TEST_ISSUER_OPS_SECRET" },
          { id: "edge", hmac_secret_env: "HI_TEST_ISSUER_EDGE_SECRET" },
        ],
      },
    }),
    env: { HI_TEST_ISSUER_EDGE_SECRET: "edge-secret-value" },
  });
  try {
    const line = await served.waitForOutput(/authority issuer "ops"/);
    assert.match(line, /its secret variable HI_TEST_ISSUER_OPS_SECRET is not set/);
    await served.waitForOutput(/local health (fit|unfit)/);
    assert.doesNotMatch(served.output(), /authority issuer "edge"/, "an issuer with its secret is not named");
    assert.equal(served.output().match(/authority issuer "ops"/g)?.length, 1);
    const response = await fetch(`${served.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "auto",
        messages: [{ role: "user", content: "hi" }],
        authority: {
          issued_by: "ops",
          lease_id: crypto.randomUUID(),
          ttl: 60,
          scope: "chat:completions",
          issued_at: Math.floor(Date.now() / 1000),
          signature: "AAAA",
        },
      }),
    });
    const body = await response.json();
    assert.equal(response.status, 403, JSON.stringify(body));
    assert.equal(body.error.code, "AUTHORITY_SIGNATURE_INVALID");
    assert.match(body.error.message, /no key for issuer "ops"/);
  } finally {
    await served.close();
  }
});
