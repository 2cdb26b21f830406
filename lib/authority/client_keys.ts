/**
 * Client API keys. The policy stores only the sha256 of each key, so a leaked policy file does not leak
 * keys; a presented key is hashed and compared in constant time against every listed hash.
 */
import { Buffer } from "node:buffer";
import { createHash, timingSafeEqual } from "node:crypto";
import type { ClientKey } from "./schema.ts";

/** Options for `checkClientKey`. */
export interface CheckClientKeyOptions {
  /** The policy's `client_keys`; empty means the router does not authenticate clients. */
  keys: readonly Pick<ClientKey, "id" | "sha256">[];
  /** Also accept Anthropic's `x-api-key` header (for `/v1/messages`). */
  allowXApiKey: boolean;
}

/** The outcome of a client key check. */
export type ClientKeyResult =
  | { ok: true; keyId: string | null }
  | { ok: false; code: "CLIENT_KEY_MISSING" | "CLIENT_KEY_INVALID"; message: string };

/** The sha256 hex of a client key: what an operator puts in the policy's `client_keys[].sha256`. */
export function hashClientKey(key: string): string {
  return createHash("sha256").update(key, "utf8").digest("hex");
}

/**
 * Checks the request's client key. `Authorization: Bearer` wins over `x-api-key` when both are sent,
 * so one request never carries two identities.
 */
export function checkClientKey(headers: Headers, options: CheckClientKeyOptions): ClientKeyResult {
  if (options.keys.length === 0) return { ok: true, keyId: null };
  const authorization = headers.get("authorization");
  let presented: string | null = null;
  if (authorization !== null) {
    const match = /^Bearer[ \t]+(\S+)[ \t]*$/i.exec(authorization);
    if (match === null) {
      return {
        ok: false,
        code: "CLIENT_KEY_INVALID",
        message: "authorization header is not a bearer token; send `Authorization: Bearer <key>`",
      };
    }
    presented = match[1];
  } else if (options.allowXApiKey) {
    presented = headers.get("x-api-key")?.trim() || null;
  }
  if (presented === null) {
    return {
      ok: false,
      code: "CLIENT_KEY_MISSING",
      message: options.allowXApiKey
        ? "no client key was sent; send `Authorization: Bearer <key>` or `x-api-key: <key>`"
        : "no client key was sent; send `Authorization: Bearer <key>`",
    };
  }
  const digest = createHash("sha256").update(presented, "utf8").digest();
  let keyId: string | null = null;
  // Compare against every key without stopping early, so timing does not reveal which entry matched.
  for (const key of options.keys) {
    const listed = Buffer.from(key.sha256, "hex");
    if (listed.length === digest.length && timingSafeEqual(listed, digest) && keyId === null) keyId = key.id;
  }
  if (keyId === null) {
    return {
      ok: false,
      code: "CLIENT_KEY_INVALID",
      message: "client key is not recognised; check the key you sent",
    };
  }
  return { ok: true, keyId };
}
