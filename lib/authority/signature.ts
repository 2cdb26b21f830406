/**
 * Signing and verifying authority blocks. The signed bytes are the RFC 8785 canonical JSON of the block
 * without its `signature` field, so any re-serialisation by a proxy or SDK keeps the signature valid.
 * Signatures are canonical base64url without padding (one spelling per signature): HMAC-SHA256 (32 bytes,
 * 43 characters) or Ed25519 (64 bytes, 86 characters).
 */
import canonicalize from "canonicalize";
import { createHmac, timingSafeEqual } from "node:crypto";

/** The bytes a signature covers: canonical JSON of the block minus `signature`. */
export function signingPayload(block: Record<string, unknown>): Uint8Array<ArrayBuffer> {
  const { signature: _signature, ...unsigned } = block;
  const text = canonicalize(unsigned);
  if (text === undefined) throw new TypeError("authority block cannot be canonicalized; pass a JSON object");
  return new TextEncoder().encode(text);
}

/** Encodes bytes as base64url without padding. */
export function toBase64Url(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary).replaceAll("+", "-").replaceAll("/", "_").replace(/=+$/, "");
}

/**
 * Decodes canonical base64url without padding; returns null for anything else, including a text whose last
 * character carries non-zero unused bits, so every byte string has exactly one accepted spelling.
 */
export function fromBase64Url(text: string): Uint8Array<ArrayBuffer> | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text) || text.length % 4 === 1) return null;
  const bytes = decodeBase64(text.replaceAll("-", "+").replaceAll("_", "/"));
  // atob ignores the unused low bits of the last character: "…Q" and "…R" decode alike. A signature
  // must re-encode to exactly what was sent, or one signature would have several accepted spellings.
  if (bytes === null || toBase64Url(bytes) !== text) return null;
  return bytes;
}

/** Decodes standard base64 (padding optional); returns null when it is not base64. */
export function decodeBase64(text: string): Uint8Array<ArrayBuffer> | null {
  try {
    const binary = atob(text);
    const bytes = new Uint8Array(binary.length);
    for (let i = 0; i < binary.length; i++) bytes[i] = binary.charCodeAt(i);
    return bytes;
  } catch {
    return null;
  }
}

function encodeBase64(bytes: Uint8Array): string {
  let binary = "";
  for (const byte of bytes) binary += String.fromCharCode(byte);
  return btoa(binary);
}

/** Key material for `signAuthority`: an HMAC secret or an Ed25519 PKCS#8 private key. */
export type SigningKey = { hmacSecret: string } | { ed25519PrivateKey: CryptoKey };

/** Signs a block, returning a copy with `signature` set (any old signature is replaced). */
export async function signAuthority<T extends Record<string, unknown>>(
  block: T,
  key: SigningKey,
): Promise<T & { signature: string }> {
  const payload = signingPayload(block);
  let signature: Uint8Array;
  if ("hmacSecret" in key) {
    signature = new Uint8Array(createHmac("sha256", key.hmacSecret).update(payload).digest());
  } else {
    signature = new Uint8Array(await crypto.subtle.sign("Ed25519", key.ed25519PrivateKey, payload));
  }
  return { ...block, signature: toBase64Url(signature) };
}

/** Checks an HMAC-SHA256 signature in constant time. */
export function verifyHmac(payload: Uint8Array<ArrayBuffer>, signature: string, secret: string): boolean {
  const given = fromBase64Url(signature);
  const expected = new Uint8Array(createHmac("sha256", secret).update(payload).digest());
  if (given === null || given.length !== expected.length) return false;
  return timingSafeEqual(given, expected);
}

const publicKeys = new Map<string, Promise<CryptoKey | null>>();

/** Imports (and caches) a raw 32-byte Ed25519 public key given in standard base64; null if unusable. */
export function importEd25519PublicKey(base64: string): Promise<CryptoKey | null> {
  let key = publicKeys.get(base64);
  if (key === undefined) {
    const raw = decodeBase64(base64);
    key = raw === null || raw.length !== 32
      ? Promise.resolve(null)
      : crypto.subtle.importKey("raw", raw, { name: "Ed25519" }, false, ["verify"]).catch(() => null);
    publicKeys.set(base64, key);
  }
  return key;
}

/** Checks an Ed25519 signature against a raw base64 public key. */
export async function verifyEd25519(
  payload: Uint8Array<ArrayBuffer>,
  signature: string,
  publicKey: string,
): Promise<boolean> {
  const key = await importEd25519PublicKey(publicKey);
  const given = fromBase64Url(signature);
  if (key === null || given === null || given.length !== 64) return false;
  try {
    return await crypto.subtle.verify("Ed25519", key, given, payload);
  } catch {
    return false;
  }
}

/** A freshly generated Ed25519 key pair in the formats the policy and the CLI use. */
export interface Ed25519KeyPair {
  /** Raw 32-byte public key, standard base64: the policy's `ed25519_public_key`. */
  ed25519_public_key: string;
  /** PKCS#8 private key as PEM: what `cli/authority.ts sign --ed25519-private-key` reads. */
  ed25519_private_key_pem: string;
}

/** Generates an Ed25519 key pair for an issuer. */
export async function generateEd25519KeyPair(): Promise<Ed25519KeyPair> {
  const pair = await crypto.subtle.generateKey({ name: "Ed25519" }, true, [
    "sign",
    "verify",
  ]) as CryptoKeyPair;
  const raw = new Uint8Array(await crypto.subtle.exportKey("raw", pair.publicKey));
  const pkcs8 = new Uint8Array(await crypto.subtle.exportKey("pkcs8", pair.privateKey));
  const body = encodeBase64(pkcs8).match(/.{1,64}/g)!.join("\n");
  return {
    ed25519_public_key: encodeBase64(raw),
    ed25519_private_key_pem: `-----BEGIN PRIVATE KEY-----\n${body}\n-----END PRIVATE KEY-----\n`,
  };
}

/** Imports an Ed25519 private key from PKCS#8 PEM (or from the JSON that `keygen` prints). */
export async function importEd25519PrivateKey(text: string): Promise<CryptoKey> {
  let pem = text.trim();
  if (pem.startsWith("{")) {
    const parsed = JSON.parse(pem) as { ed25519_private_key_pem?: unknown };
    if (typeof parsed.ed25519_private_key_pem !== "string") {
      throw new TypeError("key file JSON has no ed25519_private_key_pem; pass the file keygen printed");
    }
    pem = parsed.ed25519_private_key_pem.trim();
  }
  const match = pem.match(/-----BEGIN PRIVATE KEY-----([\s\S]+?)-----END PRIVATE KEY-----/);
  const der = match ? decodeBase64(match[1].replace(/\s+/g, "")) : null;
  if (der === null) {
    throw new TypeError("key file is not a PKCS#8 PEM private key; pass the file keygen printed");
  }
  return await crypto.subtle.importKey("pkcs8", der, { name: "Ed25519" }, false, ["sign"]);
}
