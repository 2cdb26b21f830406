/**
 * Authority details at the boundary (issue 15, item 7), through `deno task serve`: with client keys listed
 * every endpoint but /healthz needs one, /readyz without one says only whether the router is ready, and an
 * authority signature has exactly one accepted spelling.
 */
import assert from "node:assert/strict";
import {
  generateEd25519KeyPair,
  hashClientKey,
  importEd25519PrivateKey,
  signAuthority,
  type SigningKey,
} from "../../lib/authority/mod.ts";
import { policyWith, startServeHealthy } from "../e2e/serve_harness.ts";

const CLIENT_KEY = `sk-hi-${crypto.randomUUID()}`;
const WRONG_KEY = `sk-hi-wrong-${crypto.randomUUID()}`;
const OPS_SECRET_ENV = "HI_TEST_OPS_SECRET";
const OPS_SECRET = `hmac-ops-${crypto.randomUUID()}`;
const EDGE_KEYS = await generateEd25519KeyPair();
const EDGE: SigningKey = {
  ed25519PrivateKey: await importEd25519PrivateKey(EDGE_KEYS.ed25519_private_key_pem),
};
const OPS: SigningKey = { hmacSecret: OPS_SECRET };
const ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/** The same signature bytes spelled with other unused low bits in its last character. */
function respellings(signature: string): string[] {
  // 43 characters carry 32 bytes (2 spare bits), 86 carry 64 bytes (4 spare bits).
  const spare = (signature.length * 6) % 8;
  const last = ALPHABET.indexOf(signature.at(-1)!);
  const out: string[] = [];
  for (let bits = 1; bits < 1 << spare; bits++) out.push(signature.slice(0, -1) + ALPHABET[last ^ bits]);
  return out;
}

/** A GET's status, parsed body (text when not JSON) and headers. */
interface Got {
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
  headers: Headers;
}

async function get(url: string, headers: Record<string, string> = {}): Promise<Got> {
  const response = await fetch(url, { headers });
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Prometheus text
  }
  return { status: response.status, body, headers: response.headers };
}

Deno.test("client keys guard every endpoint but /healthz; signatures have one spelling", async (t) => {
  const h = await startServeHealthy({
    noCloudKeys: true,
    policy: policyWith({
      client_keys: [{ id: "team-a", sha256: hashClientKey(CLIENT_KEY) }],
      authority: {
        issuers: [
          { id: "ops", hmac_secret_env: OPS_SECRET_ENV },
          { id: "edge", ed25519_public_key: EDGE_KEYS.ed25519_public_key },
        ],
      },
    }),
    env: { [OPS_SECRET_ENV]: OPS_SECRET },
  });
  const bearer = { authorization: `Bearer ${CLIENT_KEY}` };
  try {
    await t.step("/healthz answers without a key", async () => {
      const sent = await get(`${h.url}/healthz`);
      assert.equal(sent.status, 200);
      assert.deepEqual(sent.body, { status: "ok" });
    });

    for (const path of ["/v1/models", "/metrics", "/no-such-route"]) {
      await t.step(
        `${path} without a key is 401 CLIENT_KEY_MISSING, OpenAI-shaped, with a request id`,
        async () => {
          const sent = await get(`${h.url}${path}`);
          assert.equal(sent.status, 401, JSON.stringify(sent.body));
          assert.equal(sent.body.error.type, "authentication_error");
          assert.equal(sent.body.error.code, "CLIENT_KEY_MISSING");
          assert.match(sent.body.error.message, /Authorization: Bearer/);
          assert.ok(sent.headers.get("x-request-id"));
        },
      );
    }

    await t.step("/v1/models with a wrong key is 401 CLIENT_KEY_INVALID and does not echo it", async () => {
      const sent = await get(`${h.url}/v1/models`, { authorization: `Bearer ${WRONG_KEY}` });
      assert.equal(sent.status, 401);
      assert.equal(sent.body.error.code, "CLIENT_KEY_INVALID");
      assert.ok(!JSON.stringify(sent.body).includes(WRONG_KEY));
    });

    await t.step(
      "/v1/models and /metrics answer with the key (Bearer, or x-api-key as Anthropic SDKs send)",
      async () => {
        const models = await get(`${h.url}/v1/models`, bearer);
        assert.equal(models.status, 200);
        assert.ok(models.body.data.some((m: { id: string }) => m.id === "qwen3:8b"));
        assert.equal((await get(`${h.url}/v1/models`, { "x-api-key": CLIENT_KEY })).status, 200);
        const metrics = await get(`${h.url}/metrics`, bearer);
        assert.equal(metrics.status, 200);
        assert.match(String(metrics.body), /# TYPE/);
      },
    );

    await t.step("/readyz without a key says only whether the router is ready", async () => {
      for (const headers of [{}, { authorization: `Bearer ${WRONG_KEY}` }] as Record<string, string>[]) {
        const sent = await get(`${h.url}/readyz`, headers);
        assert.equal(sent.status, 200);
        assert.deepEqual(sent.body, { ready: true });
        assert.ok(sent.headers.get("x-request-id"));
      }
    });

    await t.step("/readyz with the key gets the full body (health, slot, EDR writer)", async () => {
      const sent = await get(`${h.url}/readyz`, bearer);
      assert.equal(sent.status, 200);
      assert.equal(sent.body.ready, true);
      assert.equal(sent.body.local.state, "fit");
      assert.equal(sent.body.slot.busy, false);
      assert.equal(sent.body.edr.state, "ok");
    });

    const chat = async (authority: Record<string, unknown>) => {
      const response = await fetch(`${h.url}/v1/chat/completions`, {
        method: "POST",
        headers: { "content-type": "application/json", ...bearer },
        body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "signed" }], authority }),
      });
      return {
        status: response.status,
        body: await response.json(),
        id: response.headers.get("x-request-id")!,
      };
    };
    for (const [issuer, key] of [["ops", OPS], ["edge", EDGE]] as const) {
      await t.step(
        `${issuer}: another spelling of a valid signature is 403 AUTHORITY_SIGNATURE_INVALID with an EDR`,
        async () => {
          const block = await signAuthority({
            issued_by: issuer,
            scope: "chat:completions",
            ttl: 60,
            lease_id: crypto.randomUUID(),
            issued_at: Math.floor(Date.now() / 1000),
          }, key);
          const others = respellings(block.signature);
          assert.equal(others.length, issuer === "ops" ? 3 : 15);
          for (const signature of others) {
            const sent = await chat({ ...block, signature });
            assert.equal(sent.status, 403, JSON.stringify(sent.body));
            assert.equal(sent.body.error.code, "AUTHORITY_SIGNATURE_INVALID");
            if (signature === others[0]) {
              const record = await h.record(sent.id);
              assert.equal(record.failure?.type, "authority_violation");
            }
          }
          // The refusals spent nothing: the canonical spelling of the same block is accepted once.
          const accepted = await chat(block);
          assert.equal(accepted.status, 200, JSON.stringify(accepted.body));
        },
      );
    }
  } finally {
    await h.close();
  }
});
