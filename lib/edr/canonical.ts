/** RFC 8785 (JCS) canonical JSON and SHA-256 helpers used for every EDR hash. */

import canonicalize from "canonicalize";
import { hash } from "node:crypto";

/** Deeper values are rare enough that the library's walk is the better path for them. */
const MAX_FAST_DEPTH = 32;

/**
 * True when `JSON.stringify(value)` is already the RFC 8785 text: plain objects whose keys are in
 * UTF-16 code-unit order and hold no `undefined`, arrays without holes' stand-ins, finite numbers,
 * well-formed strings. RFC 8785 takes its string and number forms from ECMAScript's JSON.stringify,
 * so only member order, and the values JSON.stringify would quietly drop or rewrite, can differ.
 */
function isCanonicallyOrdered(value: unknown, depth: number): boolean {
  switch (typeof value) {
    case "string":
      return value.isWellFormed();
    case "number":
      return Number.isFinite(value);
    case "boolean":
      return true;
    case "object": {
      if (value === null) return true;
      if (depth > MAX_FAST_DEPTH) return false;
      if (Array.isArray(value)) {
        for (let i = 0; i < value.length; i++) {
          if (!isCanonicallyOrdered(value[i], depth + 1)) return false;
        }
        return true;
      }
      const proto = Object.getPrototypeOf(value);
      if (proto !== Object.prototype && proto !== null) return false;
      let previous: string | null = null;
      for (const key in value) {
        if (previous !== null && !(previous < key)) return false;
        if (!key.isWellFormed()) return false;
        const member = (value as Record<string, unknown>)[key];
        // JSON.stringify drops undefined members and calls toJSON; both are the library's to judge.
        if (member === undefined || !isCanonicallyOrdered(member, depth + 1)) return false;
        previous = key;
      }
      return true;
    }
    default:
      return false;
  }
}

/** True when `JSON.stringify(value)` is already its RFC 8785 text (see `isCanonicallyOrdered`). */
export function stringifiesCanonically(value: unknown): boolean {
  return isCanonicallyOrdered(value, 0);
}

/**
 * Serializes a JSON value per RFC 8785; throws on values JSON cannot carry (undefined, NaN, cycles).
 * Values already in canonical member order, which is how the router builds its records, take V8's
 * native JSON.stringify; anything else goes through the `canonicalize` library.
 */
export function canonicalJson(value: unknown): string {
  if (isCanonicallyOrdered(value, 0)) return JSON.stringify(value);
  const text = canonicalize(value);
  if (text === undefined) {
    throw new TypeError("value has no JSON representation; pass a JSON object, array or primitive");
  }
  return text;
}

/** Lower-case hex SHA-256 of a string (hashed as UTF-8) or of raw bytes. */
export function sha256Hex(text: string | Uint8Array): string {
  // The one-shot form skips creating a Hash object (a native resource) per call.
  return hash("sha256", text, "hex");
}

/** Lower-case hex SHA-256 of a value's RFC 8785 canonical JSON. */
export function hashCanonical(value: unknown): string {
  return sha256Hex(canonicalJson(value));
}
