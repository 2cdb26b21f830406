import assert from "node:assert/strict";
import { checkClientKey, clientKeysPolicySchema, hashClientKey } from "../../lib/authority/mod.ts";

const keys = clientKeysPolicySchema.parse([
  { id: "alice", sha256: hashClientKey("sk-alice-123") },
  { id: "bob", sha256: hashClientKey("sk-bob-456").toUpperCase() },
]);

function check(headers: Record<string, string>, allowXApiKey: boolean) {
  return checkClientKey(new Headers(headers), { keys, allowXApiKey });
}

Deno.test("client keys gate requests only when the policy lists keys", async (t) => {
  await t.step("with no keys listed every request passes anonymously", () => {
    assert.deepEqual(checkClientKey(new Headers(), { keys: [], allowXApiKey: false }), {
      ok: true,
      keyId: null,
    });
  });

  await t.step("a missing key is CLIENT_KEY_MISSING on both routes", () => {
    for (const allow of [false, true]) {
      const result = check({}, allow);
      assert.equal(!result.ok && result.code, "CLIENT_KEY_MISSING");
    }
  });

  await t.step("the right bearer key is accepted and named", () => {
    assert.deepEqual(check({ authorization: "Bearer sk-alice-123" }, false), { ok: true, keyId: "alice" });
    assert.deepEqual(check({ authorization: "bearer sk-bob-456" }, true), { ok: true, keyId: "bob" });
  });

  await t.step("a wrong bearer key is CLIENT_KEY_INVALID", () => {
    const result = check({ authorization: "Bearer sk-alice-124" }, false);
    assert.equal(!result.ok && result.code, "CLIENT_KEY_INVALID");
    assert.ok(!result.ok && !result.message.includes("sk-alice"), "the message must not echo the key");
  });

  await t.step("a non-bearer authorization header is CLIENT_KEY_INVALID", () => {
    const result = check({ authorization: "Basic c2stYWxpY2UtMTIz" }, false);
    assert.equal(!result.ok && result.code, "CLIENT_KEY_INVALID");
  });

  await t.step("x-api-key is accepted where allowed (/v1/messages)", () => {
    assert.deepEqual(check({ "x-api-key": "sk-bob-456" }, true), { ok: true, keyId: "bob" });
    const wrong = check({ "x-api-key": "sk-bob-457" }, true);
    assert.equal(!wrong.ok && wrong.code, "CLIENT_KEY_INVALID");
  });

  await t.step("x-api-key is ignored where not allowed (/v1/chat/completions)", () => {
    const result = check({ "x-api-key": "sk-bob-456" }, false);
    assert.equal(!result.ok && result.code, "CLIENT_KEY_MISSING");
  });

  await t.step("when both headers are sent the bearer token decides", () => {
    assert.deepEqual(check({ authorization: "Bearer sk-alice-123", "x-api-key": "nope" }, true), {
      ok: true,
      keyId: "alice",
    });
    const result = check({ authorization: "Bearer nope", "x-api-key": "sk-alice-123" }, true);
    assert.equal(!result.ok && result.code, "CLIENT_KEY_INVALID");
  });

  await t.step("the policy list defaults to empty and rejects malformed hashes and duplicate ids", () => {
    assert.deepEqual(clientKeysPolicySchema.parse(undefined), []);
    assert.equal(clientKeysPolicySchema.safeParse([{ id: "a", sha256: "abc" }]).success, false);
    const dup = [{ id: "a", sha256: hashClientKey("1") }, { id: "a", sha256: hashClientKey("2") }];
    assert.equal(clientKeysPolicySchema.safeParse(dup).success, false);
  });
});
