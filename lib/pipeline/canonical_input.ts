/**
 * Admission check for what an EDR will hash: every value the record takes from the client must have an
 * RFC 8785 form, or the record could not be sealed after the provider had already been called. JSON can
 * carry two things RFC 8785 cannot: a lone UTF-16 surrogate (a `\ud800` escape) and a number too large
 * for a double (`1e400` parses to Infinity).
 */
import { RouterError } from "./errors.ts";

/** Where in a client value something has no canonical form, and what it is. */
export interface UncanonicalizableValue {
  /** The field as the client wrote it, e.g. `messages[0].content` or `routing_contract.model_preferences[1]`. */
  path: string;
  problem: string;
}

const IDENTIFIER = /^[A-Za-z_][A-Za-z0-9_]*$/;

function childPath(parent: string, key: string): string {
  if (IDENTIFIER.test(key)) return parent ? `${parent}.${key}` : key;
  // JSON.stringify escapes a lone surrogate, so the path itself stays printable and canonicalizable.
  return `${parent}[${JSON.stringify(key)}]`;
}

/**
 * The first place in `value` (a parsed JSON value) that RFC 8785 cannot serialize, or null. The walk
 * uses an explicit stack, so a deeply nested value cannot overflow the call stack.
 */
export function findUncanonicalizable(value: unknown, root: string): UncanonicalizableValue | null {
  const stack: Array<[unknown, string]> = [[value, root]];
  while (stack.length > 0) {
    const [current, path] = stack.pop()!;
    if (typeof current === "string") {
      if (!current.isWellFormed()) {
        return { path: path || "body", problem: "holds a lone UTF-16 surrogate, which is not valid Unicode" };
      }
    } else if (typeof current === "number") {
      if (!Number.isFinite(current)) {
        return { path: path || "body", problem: "is a number too large for a 64-bit float" };
      }
    } else if (Array.isArray(current)) {
      for (let i = current.length - 1; i >= 0; i--) stack.push([current[i], `${path}[${i}]`]);
    } else if (typeof current === "object" && current !== null) {
      const keys = Object.keys(current);
      for (let i = keys.length - 1; i >= 0; i--) {
        const key = keys[i];
        if (!key.isWellFormed()) {
          return {
            path: childPath(path, key),
            problem: "has a member name with a lone UTF-16 surrogate, which is not valid Unicode",
          };
        }
        stack.push([(current as Record<string, unknown>)[key], childPath(path, key)]);
      }
    }
  }
  return null;
}

/** The 400 for a value that has no canonical form: names the field and says what to send instead. */
export function uncanonicalizableError(found: UncanonicalizableValue): RouterError {
  return new RouterError(
    400,
    "INVALID_UNICODE_OR_NUMBER",
    `${found.path} ${found.problem}; send well-formed text and finite numbers so the request can be recorded`,
    { param: found.path, failureType: "validation_error", stage: "parse", shouldRetry: false },
  );
}

/** Throws the 400 when `value` (from the field `root`) has no canonical form. */
export function assertCanonicalizable(value: unknown, root: string): void {
  const found = findUncanonicalizable(value, root);
  if (found) throw uncanonicalizableError(found);
}

/**
 * Checks a header that carries JSON (`x-routing-contract`, `x-authority`); a problem is named as
 * `<header>.<field>`. Text that is not JSON is left to the header's own parser, which names that problem.
 */
export function assertCanonicalizableHeader(text: string | null, name: string): void {
  if (text === null) return;
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return;
  }
  assertCanonicalizable(parsed, name);
}
