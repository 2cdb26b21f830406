/** RFC 8785 (JCS) canonical JSON and SHA-256 helpers used for every EDR hash. */

import canonicalize from "canonicalize";
import { createHash } from "node:crypto";

/** Serializes a JSON value per RFC 8785; throws on values JSON cannot carry (undefined, NaN, cycles). */
export function canonicalJson(value: unknown): string {
  const text = canonicalize(value);
  if (text === undefined) {
    throw new TypeError("value has no JSON representation; pass a JSON object, array or primitive");
  }
  return text;
}

/** Lower-case hex SHA-256 of a string (hashed as UTF-8) or of raw bytes. */
export function sha256Hex(text: string | Uint8Array): string {
  return createHash("sha256").update(text).digest("hex");
}

/** Lower-case hex SHA-256 of a value's RFC 8785 canonical JSON. */
export function hashCanonical(value: unknown): string {
  return sha256Hex(canonicalJson(value));
}
