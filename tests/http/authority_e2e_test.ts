/**
 * Authority blocks, single-use leases and client keys at the HTTP boundary (issue 8 acceptance): every
 * refusal a client can meet on /v1/chat/completions, /v1/messages and /metrics, lease replay across
 * restarts and a kill -9, concurrent double use, signed blocks, client keys, and that no secret reaches
 * an artifact or an output line. Every router here is `deno task serve`, as users run it.
 */
import assert from "node:assert/strict";
import Anthropic from "@anthropic-ai/sdk";
import OpenAI, { APIError } from "openai";
import {
  generateEd25519KeyPair,
  hashClientKey,
  hashLeaseId,
  importEd25519PrivateKey,
  signAuthority,
  type SigningKey,
} from "../../lib/authority/mod.ts";
import type { EdrRecord } from "../../lib/edr/mod.ts";
import { policyWith, type ServedRouter, startServeHealthy } from "../e2e/serve_harness.ts";

const serve = startServeHealthy;

// ---------------------------------------------------------------------------------------------------
// Secrets: everything registered here must never appear in an artifact file or a log line.

const SECRETS = new Map<string, string>();

/** Registers a secret for the leak scan and returns it. */
function secret<T extends string>(value: T, label: string): T {
  SECRETS.set(value, label);
  return value;
}

/** A fresh, distinctive lease id, registered as a secret (the router may keep only its sha256). */
function lease(): string {
  return secret(`lease-${crypto.randomUUID()}`, "raw lease id");
}

/** Registers a block's raw lease id and signature as secrets and returns the block. */
function remember<T extends Record<string, unknown>>(block: T): T {
  if (typeof block.lease_id === "string" && block.lease_id.length >= 16) {
    secret(block.lease_id, "raw lease id");
  }
  if (typeof block.signature === "string" && block.signature.length >= 16) {
    secret(block.signature, "authority signature");
  }
  return block;
}

const OPS_SECRET_ENV = "HI_TEST_OPS_SECRET";
const OPS_SECRET = secret(`hmac-ops-${crypto.randomUUID()}`, "issuer HMAC secret");
const WRONG_HMAC_SECRET = secret(`hmac-wrong-${crypto.randomUUID()}`, "wrong HMAC secret");
const CLIENT_KEY_A = secret(`sk-hi-a-${crypto.randomUUID()}`, "client key");
const CLIENT_KEY_B = secret(`sk-hi-b-${crypto.randomUUID()}`, "client key");
const WRONG_CLIENT_KEY = secret(`sk-hi-wrong-${crypto.randomUUID()}`, "wrong client key");

const EDGE_KEYS = await generateEd25519KeyPair();
const OTHER_KEYS = await generateEd25519KeyPair();
for (const pair of [EDGE_KEYS, OTHER_KEYS]) {
  for (const line of pair.ed25519_private_key_pem.split("\n")) {
    if (line.length >= 32 && !line.startsWith("-----")) secret(line, "Ed25519 private key");
  }
}
const EDGE_PRIVATE = await importEd25519PrivateKey(EDGE_KEYS.ed25519_private_key_pem);
const OTHER_PRIVATE = await importEd25519PrivateKey(OTHER_KEYS.ed25519_private_key_pem);

/** Reads every file under `dir` as text, recursively. */
async function readTree(dir: string): Promise<{ path: string; text: string }[]> {
  const out: { path: string; text: string }[] = [];
  const decoder = new TextDecoder();
  const walk = async (at: string): Promise<void> => {
    for await (const entry of Deno.readDir(at)) {
      const path = `${at}/${entry.name}`;
      if (entry.isDirectory) await walk(path);
      else if (entry.isFile) out.push({ path, text: decoder.decode(await Deno.readFile(path)) });
    }
  };
  await walk(dir);
  return out;
}

/**
 * Asserts no registered secret appears in any file under `artifactsDir` or in `logs`, that the lease log
 * holds only hashes, and that captured inputs exist and carry no authority block.
 */
async function assertNoSecretsLeaked(artifactsDir: string, logs: string[]): Promise<void> {
  const files = await readTree(artifactsDir);
  const names = files.map((f) => f.path.slice(artifactsDir.length + 1));
  assert.ok(names.some((n) => n.startsWith("edr/")), "EDR files were written");
  assert.ok(names.some((n) => n.startsWith("wal/")), "a write-ahead log was written");
  assert.ok(names.includes("leases/leases.log"), "the lease store was written");
  const inputs = files.filter((f) => f.path.includes("/inputs/"));
  assert.ok(inputs.length > 0, "captured inputs were written");
  for (const input of inputs) {
    const parsed = JSON.parse(input.text) as Record<string, unknown>;
    assert.equal("authority" in parsed, false, `${input.path} holds an authority field`);
    assert.equal("routing_contract" in parsed, false, `${input.path} holds the routing contract`);
    assert.doesNotMatch(input.text, /issued_by|lease_id|signature/, `${input.path} holds authority content`);
  }
  const leaseLog = files.find((f) => f.path.endsWith("/leases/leases.log"))!;
  for (const line of leaseLog.text.split("\n").filter((l) => l !== "")) {
    assert.match(line, /^[0-9a-f]{64} \d+$/, "the lease log holds only hashes and expiry times");
  }
  const sources = [...files, { path: "(log lines)", text: logs.join("\n") }];
  assert.ok(SECRETS.size > 5);
  for (const [value, label] of SECRETS) {
    for (const source of sources) {
      assert.ok(!source.text.includes(value), `a ${label} leaked into ${source.path}`);
    }
  }
}

// ---------------------------------------------------------------------------------------------------
// Requests and expectations.

interface Sent {
  status: number;
  // deno-lint-ignore no-explicit-any
  body: any;
  headers: Headers;
  requestId: string;
}

async function send(url: string, init: RequestInit): Promise<Sent> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // Prometheus text or an empty body.
  }
  return {
    status: response.status,
    body,
    headers: response.headers,
    requestId: response.headers.get("x-request-id")!,
  };
}

const userTurn = (text: string) => [{ role: "user" as const, content: text }];

/** POSTs a chat completion with the given extension fields and headers. */
function chat(
  base: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<Sent> {
  return send(`${base}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: "auto", messages: userTurn("hello from the authority tests"), ...extra }),
  });
}

/** POSTs an Anthropic Messages request with the given extension fields and headers. */
function messages(
  base: string,
  extra: Record<string, unknown> = {},
  headers: Record<string, string> = {},
): Promise<Sent> {
  return send(`${base}/v1/messages`, {
    method: "POST",
    headers: { "content-type": "application/json", "anthropic-version": "2023-06-01", ...headers },
    body: JSON.stringify({
      model: "auto",
      max_tokens: 64,
      messages: userTurn("hello from the authority tests"),
      ...extra,
    }),
  });
}

/** Asserts a 403 authority refusal with its reason code, no retry, and exactly one EDR that says so. */
async function expectRefused(
  h: ServedRouter,
  sent: Sent,
  code: string,
  message?: RegExp,
): Promise<EdrRecord> {
  assert.equal(sent.status, 403, `expected 403 ${code}, got ${sent.status}: ${JSON.stringify(sent.body)}`);
  assert.equal(sent.headers.get("x-should-retry"), "false");
  const record = await h.record(sent.requestId);
  if (record.endpoint === "/v1/chat/completions") {
    assert.equal(sent.body.error.code, code);
    assert.equal(sent.body.error.type, "permission_error");
  } else {
    assert.equal(sent.body.type, "error");
    assert.equal(sent.body.error.type, "permission_error");
  }
  if (message) assert.match(sent.body.error.message, message);
  assert.equal(record.failure?.type, "authority_violation");
  assert.equal(record.failure?.stage, "authorize");
  assert.equal(record.failure?.message, sent.body.error.message);
  assert.equal(record.decision.path, "rejected");
  assert.deepEqual(record.attempts, []);
  assert.equal(record.decision_inputs.authority, null);
  return record;
}

/** Asserts a 200 whose EDR records the accepted block (hash of the lease id, never the raw id). */
async function expectAccepted(
  h: ServedRouter,
  sent: Sent,
  block: { issued_by: string; lease_id: string; ttl: number },
  signed: boolean,
): Promise<EdrRecord> {
  assert.equal(sent.status, 200, JSON.stringify(sent.body));
  const record = await h.record(sent.requestId);
  assert.equal(record.failure, null);
  const summary = record.decision_inputs.authority;
  assert.ok(summary, "the EDR records the accepted authority block");
  // Only a listed issuer proven by a signature is named; an unsigned block's issuer is client free text.
  assert.equal(summary.issued_by, signed ? block.issued_by : `sha256:${hashLeaseId(block.issued_by)}`);
  assert.equal(summary.lease_id_sha256, hashLeaseId(block.lease_id));
  assert.equal(summary.signed, signed);
  assert.equal(summary.ttl, block.ttl);
  return record;
}

const nowS = () => Math.floor(Date.now() / 1000);

/** An unsigned block with a fresh lease id (fields overridable). */
function unsigned(fields: Record<string, unknown> = {}) {
  return remember({
    issued_by: "ops-desk",
    scope: "chat:completions",
    ttl: 60,
    lease_id: lease(),
    ...fields,
  });
}

/** A block signed by `key`, issued now, with a fresh lease id (fields overridable). */
async function signed(issuer: string, key: SigningKey, fields: Record<string, unknown> = {}) {
  const block = await signAuthority({
    issued_by: issuer,
    scope: ["chat:completions"],
    ttl: 120,
    lease_id: lease(),
    issued_at: nowS(),
    ...fields,
  }, key);
  return remember(block);
}

/** Flips one bit of one byte of a base64url signature. */
function flipByte(signature: string): string {
  const b64 = signature.replaceAll("-", "+").replaceAll("_", "/");
  const binary = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
  const bytes = Uint8Array.from(binary, (c) => c.charCodeAt(0));
  bytes[7] ^= 0x01;
  const flipped = btoa(String.fromCharCode(...bytes)).replaceAll("+", "-").replaceAll("/", "_").replace(
    /=+$/,
    "",
  );
  assert.notEqual(flipped, signature);
  return secret(flipped, "authority signature");
}

// ---------------------------------------------------------------------------------------------------

Deno.test("every authority refusal on /v1/chat/completions is a 403 with its reason code and one EDR", async (t) => {
  const h = await serve({
    noCloudKeys: true,
    policy: policyWith({ authority: { required: true, max_ttl_s: 600 } }),
  });
  const base = h.url;
  try {
    const upstreamBefore = h.ollama.requests.length;

    await t.step("AUTHORITY_MISSING: no block when the policy requires one", async () => {
      await expectRefused(h, await chat(base), "AUTHORITY_MISSING");
    });

    await t.step(
      "AUTHORITY_MISSING: authority_required false in the request cannot waive the policy",
      async () => {
        const sent = await chat(base, { routing_contract: { authority_required: false } });
        const record = await expectRefused(h, sent, "AUTHORITY_MISSING");
        assert.equal(record.effective_contract?.authority_required, true);
      },
    );

    await t.step("AUTHORITY_MISSING: null counts as absent", async () => {
      await expectRefused(h, await chat(base, { authority: null }), "AUTHORITY_MISSING");
    });

    await t.step("AUTHORITY_INVALID: not an object", async () => {
      await expectRefused(h, await chat(base, { authority: 42 }), "AUTHORITY_INVALID", /JSON object/);
      await expectRefused(h, await chat(base, { authority: [unsigned()] }), "AUTHORITY_INVALID");
    });

    await t.step("AUTHORITY_INVALID: an unknown field is named", async () => {
      const sent = await chat(base, { authority: unsigned({ colour: "blue" }) });
      await expectRefused(h, sent, "AUTHORITY_INVALID", /colour/);
    });

    await t.step("AUTHORITY_LEASE_INVALID: a missing lease_id", async () => {
      const { lease_id: _dropped, ...block } = unsigned();
      await expectRefused(h, await chat(base, { authority: block }), "AUTHORITY_LEASE_INVALID", /lease_id/);
    });

    await t.step("AUTHORITY_INVALID: bad JSON in x-authority", async () => {
      const sent = await chat(base, {}, { "x-authority": "{issued_by: ops" });
      await expectRefused(h, sent, "AUTHORITY_INVALID", /x-authority/);
    });

    await t.step("AUTHORITY_INVALID: body and x-authority disagree", async () => {
      const sent = await chat(base, { authority: unsigned() }, { "x-authority": JSON.stringify(unsigned()) });
      await expectRefused(h, sent, "AUTHORITY_INVALID", /both/);
    });

    await t.step("AUTHORITY_ISSUER_INVALID: empty and overlong issuer", async () => {
      await expectRefused(
        h,
        await chat(base, { authority: unsigned({ issued_by: "" }) }),
        "AUTHORITY_ISSUER_INVALID",
      );
      const long = unsigned({ issued_by: "x".repeat(129) });
      await expectRefused(h, await chat(base, { authority: long }), "AUTHORITY_ISSUER_INVALID");
    });

    await t.step("AUTHORITY_SCOPE_INVALID: empty list, empty string, non-string element", async () => {
      for (const scope of [[], [""], "", [1], ["chat:completions", 7]]) {
        await expectRefused(
          h,
          await chat(base, { authority: unsigned({ scope }) }),
          "AUTHORITY_SCOPE_INVALID",
        );
      }
    });

    await t.step("AUTHORITY_SCOPE_DENIED: scopes that do not grant chat completions", async () => {
      for (const scope of ["metrics:read", ["messages:create", "something:else"]]) {
        const sent = await chat(base, { authority: unsigned({ scope }) });
        await expectRefused(h, sent, "AUTHORITY_SCOPE_DENIED", /chat:completions/);
      }
    });

    await t.step("AUTHORITY_TTL_INVALID: non-integer, zero, above max_ttl_s", async () => {
      for (const ttl of [1.5, 0, -5, 601]) {
        const sent = await chat(base, { authority: unsigned({ ttl }) });
        await expectRefused(h, sent, "AUTHORITY_TTL_INVALID", /600/);
      }
    });

    await t.step("AUTHORITY_LEASE_INVALID: bad characters, empty, overlong", async () => {
      for (const id of ["has spaces in it", "", "l".repeat(129), "lease/../etc"]) {
        const sent = await chat(base, { authority: unsigned({ lease_id: id }) });
        await expectRefused(h, sent, "AUTHORITY_LEASE_INVALID");
      }
    });

    await t.step("AUTHORITY_EXPIRED: issued_at past its ttl, or in the future", async () => {
      const old = unsigned({ issued_at: nowS() - 3600, ttl: 60 });
      await expectRefused(h, await chat(base, { authority: old }), "AUTHORITY_EXPIRED", /expired/);
      const future = unsigned({ issued_at: nowS() + 3600 });
      await expectRefused(h, await chat(base, { authority: future }), "AUTHORITY_EXPIRED", /future/);
    });

    await t.step(
      "AUTHORITY_SIGNATURE_INVALID: a signature for an issuer the router has no key for",
      async () => {
        const block = await signed("nobody-listed", { hmacSecret: WRONG_HMAC_SECRET });
        await expectRefused(h, await chat(base, { authority: block }), "AUTHORITY_SIGNATURE_INVALID");
      },
    );

    await t.step("no refused request reached an upstream", () => {
      assert.equal(h.ollama.requests.length, upstreamBefore);
    });

    await t.step("a block in the body with scope as a string is accepted and recorded", async () => {
      const block = unsigned({ scope: "chat:completions" });
      const record = await expectAccepted(h, await chat(base, { authority: block }), block, false);
      assert.deepEqual(record.decision_inputs.authority?.scopes, ["chat:completions"]);
      assert.equal(record.effective_contract?.authority_required, true);
    });

    await t.step("a block in x-authority with scope as a list is accepted", async () => {
      const block = unsigned({ scope: ["other:thing", "chat:completions"] });
      const sent = await chat(base, {}, { "x-authority": JSON.stringify(block) });
      const record = await expectAccepted(h, sent, block, false);
      // A scope the router does not know is client free text, kept only as its hash.
      assert.deepEqual(record.decision_inputs.authority?.scopes, [
        `sha256:${hashLeaseId("other:thing")}`,
        "chat:completions",
      ]);
    });

    await t.step("the same block in the body and in x-authority (any key order) is one use", async () => {
      const block = unsigned();
      const reordered = Object.fromEntries(Object.entries(block).reverse());
      const sent = await chat(base, { authority: block }, { "x-authority": JSON.stringify(reordered) });
      await expectAccepted(h, sent, block, false);
    });

    await t.step("LEASE_REPLAY: the second use of a lease id", async () => {
      const block = unsigned();
      await expectAccepted(h, await chat(base, { authority: block }), block, false);
      await expectRefused(h, await chat(base, { authority: block }), "LEASE_REPLAY", /already used/);
      // A different block (other scope, other issuer) with the same lease id is still a replay.
      const again = { ...block, issued_by: "someone-else", scope: ["chat:completions", "x"] };
      const sent = await chat(base, {}, { "x-authority": JSON.stringify(again) });
      await expectRefused(h, sent, "LEASE_REPLAY");
    });

    await t.step("a refused block does not spend its lease id", async () => {
      const block = unsigned({ scope: "metrics:read" });
      await expectRefused(h, await chat(base, { authority: block }), "AUTHORITY_SCOPE_DENIED");
      const fixed = { ...block, scope: "chat:completions" };
      await expectAccepted(h, await chat(base, { authority: fixed }), fixed, false);
    });

    await t.step("streaming requests are refused the same way before any byte", async () => {
      const sent = await chat(base, { stream: true });
      assert.match(sent.headers.get("content-type") ?? "", /application\/json/);
      const record = await expectRefused(h, sent, "AUTHORITY_MISSING");
      assert.equal(record.stream, true);
    });

    await t.step("the OpenAI SDK surfaces the refusal as a 403 APIError with the code", async () => {
      const error = await h.client.chat.completions.create({ model: "auto", messages: userTurn("sdk") })
        .catch((
          e,
        ) => e);
      assert.ok(error instanceof APIError);
      assert.equal(error.status, 403);
      assert.equal(error.code, "AUTHORITY_MISSING");
      const ok = unsigned();
      const completion = await h.client.chat.completions.create(
        { model: "auto", messages: userTurn("sdk with authority") },
        { headers: { "x-authority": JSON.stringify(ok) } },
      );
      assert.equal(completion.object, "chat.completion");
    });

    await t.step("no secret reached an artifact or a log line", async () => {
      await h.records();
      await assertNoSecretsLeaked(h.artifactsDir, [h.output()]);
    });
  } finally {
    await h.close();
  }
});

Deno.test("authority refusals on /v1/messages and GET /metrics", async (t) => {
  const h = await serve({ noCloudKeys: true, policy: policyWith({ authority: { required: true } }) });
  const base = h.url;
  try {
    await t.step("AUTHORITY_MISSING on /v1/messages is an Anthropic-shaped 403 with an EDR", async () => {
      await expectRefused(h, await messages(base), "AUTHORITY_MISSING", /requires an authority block/);
    });

    await t.step("AUTHORITY_INVALID from bad JSON in x-authority on /v1/messages", async () => {
      const sent = await messages(base, {}, { "x-authority": "not json" });
      await expectRefused(h, sent, "AUTHORITY_INVALID", /x-authority/);
    });

    await t.step("AUTHORITY_SCOPE_DENIED on /v1/messages for a metrics-only block", async () => {
      const sent = await messages(base, { authority: unsigned({ scope: "metrics:read" }) });
      await expectRefused(h, sent, "AUTHORITY_SCOPE_DENIED", /messages:create or chat:completions/);
    });

    await t.step("AUTHORITY_TTL_INVALID on /v1/messages", async () => {
      await expectRefused(
        h,
        await messages(base, { authority: unsigned({ ttl: 3601 }) }),
        "AUTHORITY_TTL_INVALID",
      );
    });

    await t.step(
      "messages:create and chat:completions both admit /v1/messages; reuse is LEASE_REPLAY",
      async () => {
        const viaMessagesScope = unsigned({ scope: "messages:create" });
        const first = await messages(base, { authority: viaMessagesScope });
        const record = await expectAccepted(h, first, viaMessagesScope, false);
        assert.equal(record.endpoint, "/v1/messages");
        assert.equal(first.body.type, "message");
        const viaChatScope = unsigned({ scope: ["chat:completions"] });
        await expectAccepted(
          h,
          await messages(base, {}, { "x-authority": JSON.stringify(viaChatScope) }),
          viaChatScope,
          false,
        );
        const replay = await messages(base, { authority: viaMessagesScope });
        await expectRefused(h, replay, "LEASE_REPLAY", /already used/);
      },
    );

    await t.step("messages:create does not admit /v1/chat/completions", async () => {
      await expectRefused(
        h,
        await chat(base, { authority: unsigned({ scope: "messages:create" }) }),
        "AUTHORITY_SCOPE_DENIED",
      );
    });

    await t.step(
      "the Anthropic SDK raises PermissionDeniedError, and succeeds with x-authority",
      async () => {
        const client = new Anthropic({ apiKey: "sk-ant-unused", baseURL: base, maxRetries: 0 });
        const request = { model: "auto", max_tokens: 32, messages: userTurn("sdk") };
        const error = await client.messages.create(request).catch((e) => e);
        assert.ok(error instanceof Anthropic.PermissionDeniedError, String(error));
        assert.equal(error.status, 403);
        assert.equal(error.headers?.get("x-should-retry"), "false");
        const message = await client.messages.create(request, {
          headers: { "x-authority": JSON.stringify(unsigned({ scope: "messages:create" })) },
        });
        assert.equal(message.type, "message");
      },
    );

    await t.step("GET /metrics without authority is refused when the policy requires authority", async () => {
      const sent = await send(`${base}/metrics`, {});
      assert.equal(sent.status, 403);
      assert.equal(sent.body.error.code, "AUTHORITY_MISSING");
      assert.equal(sent.headers.get("x-should-retry"), "false");
    });

    await t.step("GET /metrics with a chat-only block is AUTHORITY_SCOPE_DENIED", async () => {
      const sent = await send(`${base}/metrics`, { headers: { "x-authority": JSON.stringify(unsigned()) } });
      assert.equal(sent.status, 403);
      assert.equal(sent.body.error.code, "AUTHORITY_SCOPE_DENIED");
    });

    await t.step(
      "GET /metrics with a metrics:read block in x-authority serves Prometheus text once",
      async () => {
        const block = unsigned({ scope: ["metrics:read"] });
        const sent = await send(`${base}/metrics`, { headers: { "x-authority": JSON.stringify(block) } });
        assert.equal(sent.status, 200);
        assert.match(sent.headers.get("content-type") ?? "", /^text\/plain/);
        assert.match(sent.body, /hi_requests_total|# TYPE hi_/);
        const again = await send(`${base}/metrics`, { headers: { "x-authority": JSON.stringify(block) } });
        assert.equal(again.status, 403);
        assert.equal(again.body.error.code, "LEASE_REPLAY");
      },
    );

    await t.step("no secret reached an artifact or a log line", async () => {
      await h.records();
      await assertNoSecretsLeaked(h.artifactsDir, [h.output()]);
    });
  } finally {
    await h.close();
  }
});

Deno.test("authority the policy does not require: the request may require it, a sent block still counts", async (t) => {
  const h = await serve({ noCloudKeys: true });
  const base = h.url;
  try {
    await t.step("no block, no requirement: served, and the EDR records no authority", async () => {
      const sent = await chat(base);
      assert.equal(sent.status, 200);
      const record = await h.record(sent.requestId);
      assert.equal(record.decision_inputs.authority, null);
      assert.equal(record.effective_contract?.authority_required, false);
    });

    await t.step("routing_contract.authority_required in the body makes a block mandatory", async () => {
      const sent = await chat(base, { routing_contract: { authority_required: true } });
      const record = await expectRefused(h, sent, "AUTHORITY_MISSING");
      assert.equal(record.effective_contract?.authority_required, true);
    });

    await t.step("authority_required in the x-routing-contract header does too", async () => {
      const sent = await chat(base, {}, {
        "x-routing-contract": JSON.stringify({ authority_required: true }),
      });
      await expectRefused(h, sent, "AUTHORITY_MISSING");
    });

    await t.step("with the block it asked for, the request is served", async () => {
      const block = unsigned();
      const sent = await chat(base, { routing_contract: { authority_required: true }, authority: block });
      await expectAccepted(h, sent, block, false);
    });

    await t.step("a block that is sent is validated and spent even when not required", async () => {
      await expectRefused(h, await chat(base, { authority: unsigned({ ttl: 0 }) }), "AUTHORITY_TTL_INVALID");
      const block = unsigned();
      await expectAccepted(h, await chat(base, { authority: block }), block, false);
      await expectRefused(h, await chat(base, { authority: block }), "LEASE_REPLAY");
    });

    await t.step("GET /metrics is open when the policy does not require authority", async () => {
      const sent = await send(`${base}/metrics`, {});
      assert.equal(sent.status, 200);
    });

    await t.step("no secret reached an artifact or a log line", async () => {
      await h.records();
      await assertNoSecretsLeaked(h.artifactsDir, [h.output()]);
    });
  } finally {
    await h.close();
  }
});

Deno.test("ten simultaneous requests with one lease id: exactly one is admitted", async (t) => {
  const h = await serve({ noCloudKeys: true, policy: policyWith({ authority: { required: true } }) });
  try {
    await t.step("one 200 and nine LEASE_REPLAY, each with its own EDR", async () => {
      const block = unsigned();
      const upstreamBefore = h.ollama.requests.length;
      const results = await Promise.all(
        Array.from({ length: 10 }, () => chat(h.url, { authority: block })),
      );
      const admitted = results.filter((r) => r.status === 200);
      const replays = results.filter((r) => r.status === 403);
      assert.equal(admitted.length, 1, JSON.stringify(results.map((r) => r.status)));
      assert.equal(replays.length, 9);
      await expectAccepted(h, admitted[0], block, false);
      for (const replay of replays) await expectRefused(h, replay, "LEASE_REPLAY");
      assert.equal(h.ollama.requests.length, upstreamBefore + 1, "only the admitted request reached Ollama");
      assert.equal(new Set(results.map((r) => r.requestId)).size, 10);
    });

    await t.step("the same holds for a streamed burst over the header", async () => {
      const block = unsigned();
      const results = await Promise.all(
        Array.from(
          { length: 10 },
          () => chat(h.url, { stream: true }, { "x-authority": JSON.stringify(block) }),
        ),
      );
      assert.deepEqual(results.map((r) => r.status).sort(), [200, ...Array(9).fill(403)]);
    });

    await t.step("no secret reached an artifact or a log line", async () => {
      await h.records();
      await assertNoSecretsLeaked(h.artifactsDir, [h.output()]);
    });
  } finally {
    await h.close();
  }
});

Deno.test("signed blocks from listed HMAC and Ed25519 issuers", async (t) => {
  const h = await serve({
    noCloudKeys: true,
    policy: policyWith({
      authority: {
        required: true,
        clock_skew_s: 30,
        issuers: [
          { id: "ops", hmac_secret_env: OPS_SECRET_ENV },
          { id: "edge", ed25519_public_key: EDGE_KEYS.ed25519_public_key },
        ],
      },
    }),
    env: { [OPS_SECRET_ENV]: OPS_SECRET },
  });
  const base = h.url;
  const ops: SigningKey = { hmacSecret: OPS_SECRET };
  const edge: SigningKey = { ed25519PrivateKey: EDGE_PRIVATE };
  try {
    await t.step("a valid HMAC-signed block is accepted and recorded as signed", async () => {
      const block = await signed("ops", ops);
      await expectAccepted(h, await chat(base, { authority: block }), block, true);
    });

    await t.step("a valid Ed25519-signed block in x-authority is accepted", async () => {
      const block = await signed("edge", edge, { scope: "chat:completions" });
      await expectAccepted(h, await chat(base, {}, { "x-authority": JSON.stringify(block) }), block, true);
    });

    await t.step("a signed block on /v1/messages is accepted", async () => {
      const block = await signed("edge", edge, { scope: ["messages:create"] });
      await expectAccepted(h, await messages(base, { authority: block }), block, true);
    });

    await t.step("a block minted by `cli/authority.ts sign` is accepted", async () => {
      const output = await new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--config",
          new URL("../../deno.json", import.meta.url).pathname,
          "--allow-env",
          "--allow-read",
          new URL("../../cli/authority.ts", import.meta.url).pathname,
          "sign",
          "--issuer",
          "ops",
          "--scope",
          "chat:completions",
          "--scope",
          "audit:tag",
          "--ttl",
          "90",
          "--hmac-secret-env",
          OPS_SECRET_ENV,
        ],
        env: { [OPS_SECRET_ENV]: OPS_SECRET },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stderr = new TextDecoder().decode(output.stderr);
      assert.equal(output.code, 0, stderr);
      const block = remember(JSON.parse(new TextDecoder().decode(output.stdout)));
      await expectAccepted(h, await chat(base, { authority: block }), block, true);
    });

    await t.step(
      "a flipped byte in an HMAC or Ed25519 signature is AUTHORITY_SIGNATURE_INVALID",
      async () => {
        for (const [issuer, key] of [["ops", ops], ["edge", edge]] as const) {
          const block = await signed(issuer, key);
          const broken = { ...block, signature: flipByte(block.signature) };
          await expectRefused(
            h,
            await chat(base, { authority: broken }),
            "AUTHORITY_SIGNATURE_INVALID",
            /does not verify/,
          );
          // The refusal did not spend the lease: the intact block still works.
          await expectAccepted(h, await chat(base, { authority: block }), block, true);
        }
      },
    );

    await t.step("a block signed with the wrong key is AUTHORITY_SIGNATURE_INVALID", async () => {
      const wrongHmac = await signed("ops", { hmacSecret: WRONG_HMAC_SECRET });
      await expectRefused(h, await chat(base, { authority: wrongHmac }), "AUTHORITY_SIGNATURE_INVALID");
      const wrongEd = await signed("edge", { ed25519PrivateKey: OTHER_PRIVATE });
      await expectRefused(h, await chat(base, { authority: wrongEd }), "AUTHORITY_SIGNATURE_INVALID");
      // The right signature by the other issuer's key does not count for this issuer either.
      const crossed = await signed("edge", ops);
      await expectRefused(h, await chat(base, { authority: crossed }), "AUTHORITY_SIGNATURE_INVALID");
    });

    await t.step(
      "a field changed after signing (widened scope, longer ttl) breaks the signature",
      async () => {
        const block = await signed("ops", ops, { scope: "metrics:read" });
        const widened = { ...block, scope: ["metrics:read", "chat:completions"] };
        await expectRefused(h, await chat(base, { authority: widened }), "AUTHORITY_SIGNATURE_INVALID");
        const longer = await signed("edge", edge, { ttl: 60 });
        await expectRefused(
          h,
          await chat(base, { authority: { ...longer, ttl: 600 } }),
          "AUTHORITY_SIGNATURE_INVALID",
        );
      },
    );

    await t.step("a listed issuer's block without a signature is AUTHORITY_SIGNATURE_INVALID", async () => {
      const { signature: _s, ...bare } = await signed("ops", ops);
      await expectRefused(
        h,
        await chat(base, { authority: bare }),
        "AUTHORITY_SIGNATURE_INVALID",
        /must sign/,
      );
      await expectRefused(
        h,
        await chat(base, { authority: unsigned({ issued_by: "ops" }) }),
        "AUTHORITY_SIGNATURE_INVALID",
      );
    });

    await t.step(
      "an expired or future issued_at is AUTHORITY_EXPIRED even when the signature is valid",
      async () => {
        const expired = await signed("ops", ops, { issued_at: nowS() - 3600, ttl: 60 });
        await expectRefused(h, await chat(base, { authority: expired }), "AUTHORITY_EXPIRED", /expired/);
        const future = await signed("edge", edge, { issued_at: nowS() + 600 });
        await expectRefused(h, await chat(base, { authority: future }), "AUTHORITY_EXPIRED", /future/);
      },
    );

    await t.step("an unlisted issuer is AUTHORITY_ISSUER_INVALID, signed or not", async () => {
      const rogue = await signed("rogue", ops);
      await expectRefused(h, await chat(base, { authority: rogue }), "AUTHORITY_ISSUER_INVALID", /rogue/);
      await expectRefused(
        h,
        await chat(base, { authority: unsigned({ issued_by: "rogue" }) }),
        "AUTHORITY_ISSUER_INVALID",
      );
      await expectRefused(h, await messages(base, { authority: rogue }), "AUTHORITY_ISSUER_INVALID", /rogue/);
    });

    await t.step("a signed block is single-use: LEASE_REPLAY on reuse", async () => {
      const block = await signed("edge", edge);
      await expectAccepted(h, await chat(base, { authority: block }), block, true);
      await expectRefused(h, await chat(base, { authority: block }), "LEASE_REPLAY");
    });

    await t.step("a signed metrics:read block opens GET /metrics", async () => {
      const block = await signed("ops", ops, { scope: "metrics:read" });
      const sent = await send(`${base}/metrics`, { headers: { "x-authority": JSON.stringify(block) } });
      assert.equal(sent.status, 200);
      const forged = { ...(await signed("ops", ops, { scope: "metrics:read" })) };
      forged.signature = flipByte(forged.signature);
      const refused = await send(`${base}/metrics`, { headers: { "x-authority": JSON.stringify(forged) } });
      assert.equal(refused.status, 403);
      assert.equal(refused.body.error.code, "AUTHORITY_SIGNATURE_INVALID");
    });

    await t.step("no secret reached an artifact or a log line", async () => {
      await h.records();
      await assertNoSecretsLeaked(h.artifactsDir, [h.output()]);
    });
  } finally {
    await h.close();
  }
});

Deno.test("client keys: 401 without the right key, Bearer everywhere, x-api-key only on /v1/messages", async (t) => {
  const h = await serve({
    noCloudKeys: true,
    policy: policyWith({
      client_keys: [
        { id: "team-a", sha256: hashClientKey(CLIENT_KEY_A) },
        { id: "team-b", sha256: hashClientKey(CLIENT_KEY_B).toUpperCase() },
      ],
    }),
  });
  const base = h.url;
  const openai = (apiKey: string) => new OpenAI({ baseURL: `${base}/v1`, apiKey, maxRetries: 0 });
  /** Asserts a 401 with the code, no retry, no echo of what was sent, and one authentication_error EDR. */
  const expectUnauthorized = async (sent: Sent, code: string) => {
    assert.equal(sent.status, 401, JSON.stringify(sent.body));
    assert.equal(sent.headers.get("x-should-retry"), "false");
    assert.equal(sent.body.error.type, "authentication_error");
    if (sent.body.error.code !== undefined || sent.body.type !== "error") {
      assert.equal(sent.body.error.code, code);
    }
    for (const key of [CLIENT_KEY_A, CLIENT_KEY_B, WRONG_CLIENT_KEY]) {
      assert.ok(!JSON.stringify(sent.body).includes(key), "the error does not echo a key");
    }
    const record = await h.record(sent.requestId);
    assert.equal(record.failure?.type, "authentication_error");
    assert.equal(record.failure?.stage, "authenticate");
    assert.deepEqual(record.attempts, []);
    return record;
  };
  try {
    const upstreamBefore = h.ollama.requests.length;

    await t.step("no key: 401 CLIENT_KEY_MISSING", async () => {
      await expectUnauthorized(await chat(base), "CLIENT_KEY_MISSING");
    });

    await t.step("a wrong bearer key: 401 CLIENT_KEY_INVALID through the OpenAI SDK", async () => {
      const error = await openai(WRONG_CLIENT_KEY).chat.completions
        .create({ model: "auto", messages: userTurn("x") })
        .catch((e) => e);
      assert.ok(error instanceof APIError);
      assert.equal(error.status, 401);
      assert.equal(error.code, "CLIENT_KEY_INVALID");
      await expectUnauthorized(
        await chat(base, {}, { authorization: `Bearer ${WRONG_CLIENT_KEY}` }),
        "CLIENT_KEY_INVALID",
      );
    });

    await t.step("an Authorization header that is not a bearer token: 401 CLIENT_KEY_INVALID", async () => {
      const sent = await chat(base, {}, { authorization: `Basic ${btoa(`user:${CLIENT_KEY_A}`)}` });
      await expectUnauthorized(sent, "CLIENT_KEY_INVALID");
    });

    await t.step(
      "x-api-key is not a client key on /v1/chat/completions: 401 CLIENT_KEY_MISSING",
      async () => {
        await expectUnauthorized(await chat(base, {}, { "x-api-key": CLIENT_KEY_A }), "CLIENT_KEY_MISSING");
      },
    );

    await t.step("no unauthenticated request reached an upstream", () => {
      assert.equal(h.ollama.requests.length, upstreamBefore);
    });

    await t.step("the right bearer key works through the OpenAI SDK, for every listed key", async () => {
      for (const key of [CLIENT_KEY_A, CLIENT_KEY_B]) {
        const { data, response } = await openai(key).chat.completions
          .create({ model: "auto", messages: userTurn("authenticated") })
          .withResponse();
        assert.equal(data.object, "chat.completion");
        const record = await h.record(response.headers.get("x-request-id")!);
        assert.equal(record.failure, null);
      }
    });

    await t.step("x-api-key works on /v1/messages through the official Anthropic SDK", async () => {
      const client = new Anthropic({
        apiKey: "sk-ant-unused",
        baseURL: base,
        maxRetries: 0,
        // Send the key the way Anthropic clients do, as x-api-key, with no Authorization header.
        defaultHeaders: { authorization: null, "x-api-key": CLIENT_KEY_A },
      });
      const message = await client.messages.create({
        model: "auto",
        max_tokens: 32,
        messages: userTurn("hi"),
      });
      assert.equal(message.type, "message");
    });

    await t.step("the Anthropic SDK's default bearer key works on /v1/messages", async () => {
      const client = new Anthropic({ apiKey: CLIENT_KEY_B, baseURL: base, maxRetries: 0 });
      const message = await client.messages.create({
        model: "auto",
        max_tokens: 32,
        messages: userTurn("hi"),
      });
      assert.equal(message.type, "message");
    });

    await t.step("a wrong x-api-key on /v1/messages is a 401 the Anthropic SDK raises", async () => {
      const client = new Anthropic({
        apiKey: "sk-ant-unused",
        baseURL: base,
        maxRetries: 0,
        defaultHeaders: { authorization: null, "x-api-key": WRONG_CLIENT_KEY },
      });
      const error = await client.messages.create({ model: "auto", max_tokens: 32, messages: userTurn("hi") })
        .catch((e) => e);
      assert.ok(error instanceof Anthropic.AuthenticationError, String(error));
      assert.equal(error.status, 401);
      const sent = await messages(base, {}, { "x-api-key": WRONG_CLIENT_KEY });
      await expectUnauthorized(sent, "CLIENT_KEY_INVALID");
      assert.match(sent.body.error.message, /not recognised/);
    });

    await t.step("on /v1/messages with no key at all the message names both headers", async () => {
      const sent = await messages(base);
      await expectUnauthorized(sent, "CLIENT_KEY_MISSING");
      assert.match(sent.body.error.message, /x-api-key/);
    });

    await t.step("when both headers are sent the bearer key decides", async () => {
      const sent = await messages(base, {}, {
        authorization: `Bearer ${WRONG_CLIENT_KEY}`,
        "x-api-key": CLIENT_KEY_A,
      });
      await expectUnauthorized(sent, "CLIENT_KEY_INVALID");
      const ok = await messages(base, {}, {
        authorization: `Bearer ${CLIENT_KEY_A}`,
        "x-api-key": WRONG_CLIENT_KEY,
      });
      assert.equal(ok.status, 200);
    });

    await t.step(
      "the client key is checked before authority, so a 401 does not spend the lease",
      async () => {
        const block = unsigned();
        await expectUnauthorized(await chat(base, { authority: block }), "CLIENT_KEY_MISSING");
        const sent = await chat(base, { authority: block }, { authorization: `Bearer ${CLIENT_KEY_A}` });
        await expectAccepted(h, sent, block, false);
      },
    );

    await t.step("no secret reached an artifact or a log line", async () => {
      await h.records();
      await assertNoSecretsLeaked(h.artifactsDir, [h.output()]);
      const policySnapshots = (await readTree(h.artifactsDir)).filter((f) =>
        f.text.includes(hashClientKey(CLIENT_KEY_A))
      );
      assert.ok(
        policySnapshots.every((f) => !f.path.includes("/edr/")),
        "EDRs do not carry client key hashes",
      );
    });
  } finally {
    await h.close();
  }
});

Deno.test("a spent lease stays spent after deno task serve stops and starts again on the same artifacts", async (t) => {
  const artifactsDir = await Deno.makeTempDir({ prefix: "hi-authority-restart-" });
  const options = { noCloudKeys: true, artifactsDir, policy: policyWith({ authority: { required: true } }) };
  const block = unsigned();
  const outputs: string[] = [];
  const running: ServedRouter[] = [];
  try {
    await t.step("the lease is used once before the restart", async () => {
      const first = await serve(options);
      running.push(first);
      await expectAccepted(first, await chat(first.url, { authority: block }), block, false);
      const { code, output } = await first.stop("SIGTERM");
      assert.equal(code, 0, output);
      outputs.push(output);
    });

    await t.step("after the restart, reusing it is LEASE_REPLAY; a fresh lease is admitted", async () => {
      const second = await serve(options);
      running.push(second);
      const replay = await chat(second.url, { authority: block });
      assert.equal(replay.status, 403);
      assert.equal(replay.body.error.code, "LEASE_REPLAY");
      assert.equal(replay.headers.get("x-should-retry"), "false");
      const ok = await chat(second.url, { authority: unsigned() });
      assert.equal(ok.status, 200);
      const record = await second.record(replay.requestId);
      assert.equal(record.failure?.type, "authority_violation");
      await second.records();
      outputs.push(second.output());
    });

    await t.step("no secret reached an artifact or an output line", async () => {
      await assertNoSecretsLeaked(artifactsDir, outputs);
    });
  } finally {
    for (const served of running) await served.close();
    await Deno.remove(artifactsDir, { recursive: true });
  }
});

Deno.test("a spent lease stays spent after deno task serve is killed with SIGKILL", async (t) => {
  const artifactsDir = await Deno.makeTempDir({ prefix: "hi-authority-kill-" });
  const options = {
    noCloudKeys: true,
    artifactsDir,
    env: { [OPS_SECRET_ENV]: OPS_SECRET },
    policy: policyWith({
      authority: { required: true, issuers: [{ id: "ops", hmac_secret_env: OPS_SECRET_ENV }] },
    }),
  };
  const outputs: string[] = [];
  const ops: SigningKey = { hmacSecret: OPS_SECRET };
  const block = await signed("ops", ops, { ttl: 600 });
  const running: ServedRouter[] = [];
  try {
    await t.step("the router admits a signed block, then is killed with SIGKILL", async () => {
      const first = await serve(options);
      running.push(first);
      const sent = await chat(first.url, { authority: block });
      assert.equal(sent.status, 200, JSON.stringify(sent.body));
      const { code, output } = await first.stop("SIGKILL");
      assert.equal(code, 137);
      outputs.push(output);
    });

    await t.step("a new router on the same artifacts dir refuses the lease as LEASE_REPLAY", async () => {
      const second = await serve(options);
      running.push(second);
      const replay = await chat(second.url, { authority: block });
      assert.equal(replay.status, 403);
      assert.equal(replay.body.error.code, "LEASE_REPLAY");
      assert.equal(replay.headers.get("x-should-retry"), "false");
      const fresh = await signed("ops", ops);
      const ok = await chat(second.url, { authority: fresh });
      assert.equal(ok.status, 200, JSON.stringify(ok.body));
      const refusal = await second.record(replay.requestId);
      assert.equal(refusal.failure?.type, "authority_violation");
      const { code, output } = await second.stop("SIGTERM");
      assert.equal(code, 0, output);
      outputs.push(output);
    });

    await t.step("no secret reached an artifact or the routers' output", async () => {
      await assertNoSecretsLeaked(artifactsDir, outputs);
    });
  } finally {
    for (const served of running) await served.close();
    await Deno.remove(artifactsDir, { recursive: true });
  }
});
