/**
 * Client-chosen text: what an answer may repeat and how a record keeps what it need not hold. One rule for
 * every place that names an unknown field or hashes a value, so no path leaks free text the others guard.
 */
import { hash } from "node:crypto";

const FIELD_NAME = /^[A-Za-z0-9_-]{1,64}$/;

/** True when `key` is shaped like a field name, so an error may repeat it; anything else may be free text. */
export function isFieldName(key: string): boolean {
  return FIELD_NAME.test(key);
}

/** How a record keeps client text it need not hold: `sha256:` and the hex SHA-256 of its UTF-8 bytes. */
export function textHash(text: string): string {
  return `sha256:${hash("sha256", text, "hex")}`;
}
