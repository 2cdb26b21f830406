import assert from "node:assert/strict";
import {
  authorityBlockSchema,
  type AuthorityCode,
  type AuthorityPolicy,
  authorityPolicySchema,
  checkAuthority,
  type CheckAuthorityOptions,
  generateEd25519KeyPair,
  hashLeaseId,
  importEd25519PrivateKey,
  LeaseStore,
  type NeededScope,
  signAuthority,
} from "../../lib/authority/mod.ts";
import { MALFORMED_BLOCKS, TABLE_MAX_TTL_S } from "./malformed_blocks.ts";

const NOW_MS = 1_700_000_000_000;
const NOW_S = NOW_MS / 1000;
const HMAC_SECRET = "test-only-hmac-secret";

let leaseCounter = 0;
function freshLease(): string {
  return `lease-${++leaseCounter}`;
}

function unsigned(overrides: Record<string, unknown> = {}): Record<string, unknown> {
  return { issued_by: "ops", scope: ["chat:completions"], ttl: 60, lease_id: freshLease(), ...overrides };
}

const edKeys = await generateEd25519KeyPair();
const edPrivate = await importEd25519PrivateKey(edKeys.ed25519_private_key_pem);
const otherEdKeys = await generateEd25519KeyPair();

const openPolicy = authorityPolicySchema.parse({});
const signedPolicy = authorityPolicySchema.parse({
  issuers: [
    { id: "ops", hmac_secret_env: "OPS_SECRET" },
    { id: "edge", ed25519_public_key: edKeys.ed25519_public_key },
    { id: "nosecret", hmac_secret_env: "UNSET_SECRET" },
  ],
});
const strictUnsignedPolicy = authorityPolicySchema.parse({ allow_unsigned: false });

function hmacSigned(overrides: Record<string, unknown> = {}) {
  return signAuthority(unsigned({ issued_at: NOW_S, ...overrides }), { hmacSecret: HMAC_SECRET });
}

function edSigned(overrides: Record<string, unknown> = {}) {
  return signAuthority(unsigned({ issued_by: "edge", issued_at: NOW_S, ...overrides }), {
    ed25519PrivateKey: edPrivate,
  });
}

function flipSignatureByte(signature: string): string {
  const bytes = Uint8Array.from(
    atob(signature.replaceAll("-", "+").replaceAll("_", "/")),
    (c) => c.charCodeAt(0),
  );
  bytes[5] ^= 0x01;
  return btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

async function withStore(fn: (leases: LeaseStore) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "authority_check_" });
  const leases = await LeaseStore.open(dir);
  try {
    await fn(leases);
  } finally {
    await leases.close();
    await Deno.remove(dir, { recursive: true });
  }
}

function options(
  leases: LeaseStore,
  extra: Partial<CheckAuthorityOptions> = {},
): CheckAuthorityOptions {
  return {
    required: true,
    neededScope: "chat:completions",
    policy: openPolicy,
    now: NOW_MS,
    leases,
    secrets: { OPS_SECRET: HMAC_SECRET },
    ...extra,
  };
}

interface Case {
  name: string;
  code: AuthorityCode;
  raw: () => unknown | Promise<unknown>;
  header?: string;
  policy?: AuthorityPolicy;
  required?: boolean;
  neededScope?: NeededScope;
  now?: number;
}

const cases: Case[] = [
  { name: "a required block that is absent", code: "AUTHORITY_MISSING", raw: () => undefined },
  { name: "a required block sent as null", code: "AUTHORITY_MISSING", raw: () => null },
  { name: "a number instead of an object", code: "AUTHORITY_INVALID", raw: () => 42 },
  { name: "an array instead of an object", code: "AUTHORITY_INVALID", raw: () => [unsigned()] },
  {
    name: "bad JSON in the x-authority header",
    code: "AUTHORITY_INVALID",
    raw: () => undefined,
    header: "{nope",
  },
  { name: "an unknown field", code: "AUTHORITY_INVALID", raw: () => unsigned({ admin: true }) },
  { name: "ttl sent as a string", code: "AUTHORITY_TTL_INVALID", raw: () => unsigned({ ttl: "60" }) },
  {
    name: "issued_by missing",
    code: "AUTHORITY_ISSUER_INVALID",
    raw: () => ({ scope: "x", ttl: 5, lease_id: "a" }),
  },
  {
    name: "a whitespace-only issuer",
    code: "AUTHORITY_ISSUER_INVALID",
    raw: () => unsigned({ issued_by: " " }),
  },
  {
    name: "lease_id missing",
    code: "AUTHORITY_LEASE_INVALID",
    raw: () => ({ issued_by: "ops", scope: "chat:completions", ttl: 5 }),
  },
  {
    name: "issued_at not an integer",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: () => unsigned({ issued_at: 1.5 }),
  },
  {
    name: "body and header that disagree",
    code: "AUTHORITY_INVALID",
    raw: () => unsigned({ lease_id: "body-lease" }),
    header: JSON.stringify(unsigned({ lease_id: "header-lease" })),
  },
  { name: "an empty issuer", code: "AUTHORITY_ISSUER_INVALID", raw: () => unsigned({ issued_by: "" }) },
  {
    name: "an issuer the policy does not list",
    code: "AUTHORITY_ISSUER_INVALID",
    raw: () => unsigned({ issued_by: "mallory" }),
    policy: signedPolicy,
  },
  { name: "an empty scope string", code: "AUTHORITY_SCOPE_INVALID", raw: () => unsigned({ scope: "" }) },
  { name: "an empty scope list", code: "AUTHORITY_SCOPE_INVALID", raw: () => unsigned({ scope: [] }) },
  {
    name: "an empty string in the scope list",
    code: "AUTHORITY_SCOPE_INVALID",
    raw: () => unsigned({ scope: [""] }),
  },
  {
    name: "a non-string in the scope list",
    code: "AUTHORITY_SCOPE_INVALID",
    raw: () => unsigned({ scope: ["chat:completions", 5] }),
  },
  {
    name: "a scope that does not grant the route",
    code: "AUTHORITY_SCOPE_DENIED",
    raw: () => unsigned({ scope: "metrics:read" }),
  },
  {
    name: "messages:create does not grant chat completions",
    code: "AUTHORITY_SCOPE_DENIED",
    raw: () => unsigned({ scope: ["messages:create"] }),
  },
  { name: "a zero ttl", code: "AUTHORITY_TTL_INVALID", raw: () => unsigned({ ttl: 0 }) },
  { name: "a negative ttl", code: "AUTHORITY_TTL_INVALID", raw: () => unsigned({ ttl: -5 }) },
  { name: "a fractional ttl", code: "AUTHORITY_TTL_INVALID", raw: () => unsigned({ ttl: 1.5 }) },
  { name: "a ttl above max_ttl_s", code: "AUTHORITY_TTL_INVALID", raw: () => unsigned({ ttl: 3601 }) },
  { name: "an empty lease id", code: "AUTHORITY_LEASE_INVALID", raw: () => unsigned({ lease_id: "" }) },
  {
    name: "a lease id with a slash",
    code: "AUTHORITY_LEASE_INVALID",
    raw: () => unsigned({ lease_id: "../x" }),
  },
  {
    name: "a lease id with a space",
    code: "AUTHORITY_LEASE_INVALID",
    raw: () => unsigned({ lease_id: "a b" }),
  },
  {
    name: "an overlong lease id",
    code: "AUTHORITY_LEASE_INVALID",
    raw: () => unsigned({ lease_id: "x".repeat(129) }),
  },
  {
    name: "a lease id used before",
    code: "LEASE_REPLAY",
    raw: () => unsigned({ lease_id: "seen-before" }),
  },
  {
    name: "a signed block whose ttl has run out",
    code: "AUTHORITY_EXPIRED",
    raw: () => hmacSigned({ issued_at: NOW_S - 60 - 31 }),
    policy: signedPolicy,
  },
  {
    name: "a signed block issued too far in the future",
    code: "AUTHORITY_EXPIRED",
    raw: () => hmacSigned({ issued_at: NOW_S + 31 }),
    policy: signedPolicy,
  },
  {
    name: "a listed issuer sending an unsigned block",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: () => unsigned(),
    policy: signedPolicy,
  },
  {
    name: "a listed issuer omitting issued_at",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: async () => {
      const block = await hmacSigned();
      delete (block as Record<string, unknown>).issued_at;
      return block;
    },
    policy: signedPolicy,
  },
  {
    name: "an HMAC signature with a flipped byte",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: async () => {
      const block = await hmacSigned();
      return { ...block, signature: flipSignatureByte(block.signature) };
    },
    policy: signedPolicy,
  },
  {
    name: "an HMAC block signed with the wrong secret",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: () => signAuthority(unsigned({ issued_at: NOW_S }), { hmacSecret: "wrong" }),
    policy: signedPolicy,
  },
  {
    name: "a signed block whose scope was widened after signing",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: async () => ({ ...(await hmacSigned({ scope: ["metrics:read"] })), scope: ["chat:completions"] }),
    policy: signedPolicy,
  },
  {
    name: "an Ed25519 signature with a flipped byte",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: async () => {
      const block = await edSigned();
      return { ...block, signature: flipSignatureByte(block.signature) };
    },
    policy: signedPolicy,
  },
  {
    name: "an Ed25519 block signed with another key",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: async () =>
      signAuthority(unsigned({ issued_by: "edge", issued_at: NOW_S }), {
        ed25519PrivateKey: await importEd25519PrivateKey(otherEdKeys.ed25519_private_key_pem),
      }),
    policy: signedPolicy,
  },
  {
    name: "a listed issuer whose secret the router lacks",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: () => signAuthority(unsigned({ issued_by: "nosecret", issued_at: NOW_S }), { hmacSecret: "x" }),
    policy: signedPolicy,
  },
  {
    name: "a signature the router has no key for",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: () => hmacSigned(),
  },
  {
    name: "an unsigned block where unsigned blocks are off",
    code: "AUTHORITY_SIGNATURE_INVALID",
    raw: () => unsigned(),
    policy: strictUnsignedPolicy,
  },
];

Deno.test("checkAuthority refuses each kind of bad authority with its own reason code", async (t) => {
  await withStore(async (leases) => {
    assert.equal(
      (await checkAuthority(unsigned({ lease_id: "seen-before" }), options(leases))).ok,
      true,
    );
    for (const c of cases) {
      await t.step(`${c.code}: ${c.name}`, async () => {
        const result = await checkAuthority(
          await c.raw(),
          options(leases, {
            header: c.header,
            policy: c.policy ?? openPolicy,
            required: c.required ?? true,
            neededScope: c.neededScope ?? "chat:completions",
            now: c.now ?? NOW_MS,
          }),
        );
        assert.equal(result.ok, false, `expected ${c.code}, got ok`);
        if (!result.ok) {
          assert.equal(result.code, c.code, result.message);
          assert.match(result.message, /^[a-z`]/);
          assert.doesNotMatch(result.message, /\.$/);
        }
      });
    }
    await t.step("every reason code is covered by the table", () => {
      const all: AuthorityCode[] = [
        "AUTHORITY_MISSING",
        "AUTHORITY_INVALID",
        "AUTHORITY_ISSUER_INVALID",
        "AUTHORITY_SCOPE_INVALID",
        "AUTHORITY_SCOPE_DENIED",
        "AUTHORITY_TTL_INVALID",
        "AUTHORITY_LEASE_INVALID",
        "LEASE_REPLAY",
        "AUTHORITY_EXPIRED",
        "AUTHORITY_SIGNATURE_INVALID",
      ];
      assert.deepEqual(new Set(cases.map((c) => c.code)), new Set(all));
    });
  });
});

Deno.test("checkAuthority gives each field's bad value that field's reason code", async (t) => {
  assert.equal(openPolicy.max_ttl_s, TABLE_MAX_TTL_S);
  await withStore(async (leases) => {
    for (const row of MALFORMED_BLOCKS) {
      await t.step(
        `${row.code}: ${row.field} ${row.kind} (${row.name}), in the body and in x-authority`,
        async () => {
          const block = row.make(unsigned());
          const fromBody = await checkAuthority(block, options(leases));
          const fromHeader = await checkAuthority(
            undefined,
            options(leases, { header: JSON.stringify(block) }),
          );
          for (const result of [fromBody, fromHeader]) {
            assert.equal(result.ok, false, `expected ${row.code}, got ok`);
            if (result.ok) continue;
            assert.equal(result.code, row.code, result.message);
            assert.match(result.message, /^[a-z`]/);
            assert.doesNotMatch(result.message, /\.$/);
            if (row.field !== "(block)") assert.match(result.message, new RegExp(`\\b${row.field}\\b`));
            const lease = (block as { lease_id?: unknown })?.lease_id;
            if (typeof lease === "string" && lease.length > 3) assert.ok(!result.message.includes(lease));
          }
          assert.deepEqual(fromHeader, fromBody);
        },
      );
    }

    await t.step(
      "a listed issuer's block without issued_at or without signature is a signature failure",
      async () => {
        const block = await hmacSigned();
        for (const field of ["issued_at", "signature"]) {
          const { [field]: _dropped, ...rest } = block as Record<string, unknown>;
          const result = await checkAuthority(rest, options(leases, { policy: signedPolicy }));
          assert.equal(result.ok ? "ok" : result.code, "AUTHORITY_SIGNATURE_INVALID");
        }
      },
    );

    await t.step(
      "fields are judged in the documented order: issuer before scope, ttl and lease",
      async () => {
        const result = await checkAuthority(
          { issued_by: "mallory", scope: [], ttl: "60" },
          options(leases, { policy: signedPolicy }),
        );
        assert.equal(result.ok ? "ok" : result.code, "AUTHORITY_ISSUER_INVALID");
        const unknownFirst = await checkAuthority({ issued_by: " ", colour: "blue" }, options(leases));
        assert.equal(unknownFirst.ok ? "ok" : unknownFirst.code, "AUTHORITY_INVALID");
      },
    );

    await t.step(
      "unknown field names are quoted and bounded in the message (EDR messages hold 1000)",
      async () => {
        const block = unsigned({ "line\nbreak": 1, ["k".repeat(5000)]: 2, b: 3, c: 4, d: 5 });
        const result = await checkAuthority(block, options(leases));
        assert.equal(result.ok ? "ok" : result.code, "AUTHORITY_INVALID");
        if (!result.ok) {
          assert.ok(result.message.length < 300, result.message);
          assert.match(result.message, /and 2 more/);
          assert.doesNotMatch(result.message, /\n/);
        }
      },
    );

    await t.step("the block schema `authority sign` uses refuses the same blocks", () => {
      for (const row of MALFORMED_BLOCKS) {
        // The ttl bound is the policy's max_ttl_s; the schema alone cannot know it.
        if (row.field === "ttl" && row.name.startsWith("above max_ttl_s")) continue;
        assert.equal(authorityBlockSchema.safeParse(row.make(unsigned())).success, false, row.name);
      }
    });

    await t.step("a well-formed block with surrounding spaces in issued_by is still accepted", async () => {
      const result = await checkAuthority(unsigned({ issued_by: " ops " }), options(leases));
      assert.equal(result.ok, true);
    });
  });
});

Deno.test("checkAuthority admits good authority and records a secret-free summary", async (t) => {
  await withStore(async (leases) => {
    await t.step("no block and not required passes with no summary", async () => {
      assert.deepEqual(await checkAuthority(undefined, options(leases, { required: false })), {
        ok: true,
        summary: null,
      });
    });

    await t.step("a bad block is refused even when authority is not required", async () => {
      const result = await checkAuthority(unsigned({ ttl: 0 }), options(leases, { required: false }));
      assert.equal(result.ok, false);
      assert.equal(!result.ok && result.code, "AUTHORITY_TTL_INVALID");
    });

    await t.step("scope may be a single string; an unsigned issuer is recorded as a hash", async () => {
      const block = unsigned({ scope: "chat:completions" });
      const result = await checkAuthority(block, options(leases));
      assert.deepEqual(result, {
        ok: true,
        summary: {
          issued_by: `sha256:${hashLeaseId("ops")}`,
          scopes: ["chat:completions"],
          lease_id_sha256: hashLeaseId(block.lease_id as string),
          signed: false,
          ttl: 60,
        },
      });
    });

    await t.step("scope may be a list, and any listed scope can grant the route", async () => {
      const result = await checkAuthority(
        unsigned({ scope: ["chat:completions", "metrics:read"] }),
        options(leases, { neededScope: "metrics:read" }),
      );
      assert.equal(result.ok, true);
      assert.deepEqual(result.ok && result.summary?.scopes, ["chat:completions", "metrics:read"]);
    });

    await t.step("/v1/messages accepts messages:create or chat:completions", async () => {
      for (const scope of ["messages:create", "chat:completions"]) {
        const result = await checkAuthority(
          unsigned({ scope }),
          options(leases, { neededScope: "messages:create" }),
        );
        assert.equal(result.ok, true, scope);
      }
    });

    await t.step("the block may come from the x-authority header", async () => {
      const header = JSON.stringify(unsigned());
      assert.equal((await checkAuthority(undefined, options(leases, { header }))).ok, true);
    });

    await t.step("the same block in body and header is accepted once", async () => {
      const block = unsigned();
      const header = JSON.stringify({ ...block }, Object.keys(block).reverse());
      assert.equal((await checkAuthority(block, options(leases, { header }))).ok, true);
    });

    await t.step("an HMAC-signed block from a listed issuer is accepted as signed", async () => {
      const block = await hmacSigned({ scope: "chat:completions" });
      const result = await checkAuthority(block, options(leases, { policy: signedPolicy }));
      assert.equal(result.ok, true, !result.ok ? result.message : "");
      assert.equal(result.ok && result.summary?.signed, true);
      const text = JSON.stringify(result);
      assert.ok(!text.includes(block.signature), "summary must not hold the signature");
      assert.ok(!text.includes(`"${block.lease_id}"`), "summary must not hold the raw lease id");
    });

    await t.step("an Ed25519-signed block from a listed issuer is accepted as signed", async () => {
      const result = await checkAuthority(await edSigned(), options(leases, { policy: signedPolicy }));
      assert.equal(result.ok, true, !result.ok ? result.message : "");
      assert.equal(result.ok && result.summary?.signed, true);
    });

    await t.step("a signed block within the clock-skew allowance is accepted", async () => {
      const late = await hmacSigned({ issued_at: NOW_S - 60 - 29 });
      const early = await hmacSigned({ issued_at: NOW_S + 29 });
      assert.equal((await checkAuthority(late, options(leases, { policy: signedPolicy }))).ok, true);
      assert.equal((await checkAuthority(early, options(leases, { policy: signedPolicy }))).ok, true);
    });

    await t.step("a signed block replayed within its lifetime is a lease replay", async () => {
      const block = await hmacSigned();
      assert.equal((await checkAuthority(block, options(leases, { policy: signedPolicy }))).ok, true);
      const again = await checkAuthority(
        block,
        options(leases, { policy: signedPolicy, now: NOW_MS + 30_000 }),
      );
      assert.equal(!again.ok && again.code, "LEASE_REPLAY");
      const late = await checkAuthority(
        block,
        options(leases, { policy: signedPolicy, now: NOW_MS + 91_000 }),
      );
      assert.equal(!late.ok && late.code, "AUTHORITY_EXPIRED");
    });

    await t.step("an unsigned block stays spent long after its ttl", async () => {
      const block = unsigned({ ttl: 5 });
      assert.equal((await checkAuthority(block, options(leases))).ok, true);
      const dayLater = await checkAuthority(block, options(leases, { now: NOW_MS + 86_400_000 }));
      assert.equal(!dayLater.ok && dayLater.code, "LEASE_REPLAY");
    });

    await t.step("a refused block does not burn its lease id", async () => {
      const block = unsigned({ scope: "metrics:read" });
      const denied = await checkAuthority(block, options(leases));
      assert.equal(!denied.ok && denied.code, "AUTHORITY_SCOPE_DENIED");
      assert.equal((await checkAuthority(block, options(leases, { neededScope: "metrics:read" }))).ok, true);
    });
  });
});

Deno.test("authority policy schema applies defaults and rejects bad issuers", async (t) => {
  await t.step("an absent section gets the documented defaults", () => {
    assert.deepEqual(authorityPolicySchema.parse(undefined), {
      required: false,
      allow_unsigned: true,
      max_ttl_s: 3600,
      clock_skew_s: 30,
      unsigned_lease_retention_s: 30 * 24 * 3600,
      issuers: [],
    });
  });
  await t.step("an issuer with both or neither key is rejected", () => {
    const pub = edKeys.ed25519_public_key;
    assert.equal(authorityPolicySchema.safeParse({ issuers: [{ id: "a" }] }).success, false);
    assert.equal(
      authorityPolicySchema.safeParse({
        issuers: [{ id: "a", hmac_secret_env: "A", ed25519_public_key: pub }],
      })
        .success,
      false,
    );
  });
  await t.step("a misspelt policy field is rejected", () => {
    assert.equal(authorityPolicySchema.safeParse({ requird: true }).success, false);
  });
  await t.step("a duplicate issuer id is rejected", () => {
    const issuers = [{ id: "a", hmac_secret_env: "A" }, { id: "a", hmac_secret_env: "B" }];
    assert.equal(authorityPolicySchema.safeParse({ issuers }).success, false);
  });
});
