/**
 * One signature, one spelling: every other base64url text that decodes to the same bytes (other unused
 * bits in the last character, padding, standard-base64 `+` and `/`) is refused as
 * AUTHORITY_SIGNATURE_INVALID, for HMAC and Ed25519 issuers alike, and the refusal spends no lease.
 */
import assert from "node:assert/strict";
import {
  authorityPolicySchema,
  checkAuthority,
  generateEd25519KeyPair,
  importEd25519PrivateKey,
  LeaseStore,
  signAuthority,
  type SigningKey,
} from "../../lib/authority/mod.ts";

const NOW_S = 1_700_000_000;
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
const edKeys = await generateEd25519KeyPair();
const keys: Record<"ops" | "edge", SigningKey> = {
  ops: { hmacSecret: "test-only-hmac-secret" },
  edge: { ed25519PrivateKey: await importEd25519PrivateKey(edKeys.ed25519_private_key_pem) },
};
const policy = authorityPolicySchema.parse({
  issuers: [
    { id: "ops", hmac_secret_env: "OPS_SECRET" },
    { id: "edge", ed25519_public_key: edKeys.ed25519_public_key },
  ],
});

/** Other texts that a lenient base64 decoder turns into the same bytes as `signature`. */
function otherSpellings(signature: string): string[] {
  const spare = (signature.length * 6) % 8;
  const last = ALPHABET.indexOf(signature.at(-1)!);
  const out: string[] = [];
  for (let bits = 1; bits < 1 << spare; bits++) out.push(signature.slice(0, -1) + ALPHABET[last ^ bits]);
  out.push(signature + "=".repeat((4 - (signature.length % 4)) % 4));
  const standard = signature.replaceAll("-", "+").replaceAll("_", "/");
  if (standard !== signature) out.push(standard);
  return out;
}

Deno.test("an authority signature has exactly one accepted spelling", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "authority_signature_" });
  const leases = await LeaseStore.open(dir);
  try {
    const check = (block: unknown) =>
      checkAuthority(block, {
        required: true,
        neededScope: "chat:completions",
        policy,
        now: NOW_S * 1000,
        leases,
        secrets: { OPS_SECRET: "test-only-hmac-secret" },
      });
    for (const issuer of ["ops", "edge"] as const) {
      await t.step(`${issuer}: only the canonical text verifies, and refusals spend no lease`, async () => {
        // Sign until the signature holds a `-` or `_`, so the standard-base64 spelling is tried too.
        let block;
        do {
          block = await signAuthority({
            issued_by: issuer,
            scope: "chat:completions",
            ttl: 60,
            lease_id: crypto.randomUUID(),
            issued_at: NOW_S,
          }, keys[issuer]);
        } while (!/[-_]/.test(block.signature));
        const others = otherSpellings(block.signature);
        assert.equal(others.length, issuer === "ops" ? 5 : 17);
        for (const signature of others) {
          const result = await check({ ...block, signature });
          assert.equal(result.ok ? "ok" : result.code, "AUTHORITY_SIGNATURE_INVALID", signature);
        }
        const accepted = await check(block);
        assert.ok(accepted.ok, JSON.stringify(accepted));
      });
    }
  } finally {
    await leases.close();
    await Deno.remove(dir, { recursive: true });
  }
});
