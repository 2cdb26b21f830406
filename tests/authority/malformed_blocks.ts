/**
 * The table of malformed authority blocks and the reason code each must get (issue 20): for every field,
 * each kind of bad value (missing, wrong type, blank, out of range), plus blocks that are not objects or
 * carry unknown fields. Shared by the unit test (tests/authority/check_test.ts) and the HTTP test
 * (tests/http/authority_codes_test.ts), so both judge the same blocks.
 */
import type { AuthorityCode } from "../../lib/authority/mod.ts";

/** The `max_ttl_s` every policy using this table must set (the documented default). */
export const TABLE_MAX_TTL_S = 3600;

/** A field of the block, or "(block)" for what is wrong with the block as a whole. */
export type BlockField = "issued_by" | "scope" | "ttl" | "lease_id" | "issued_at" | "signature" | "(block)";

/** The kind of bad value a row sends. */
export type BadKind = "missing" | "wrong type" | "blank" | "out of range" | "not an object" | "unknown field";

/** One malformed block and the reason code it must get. */
export interface MalformedBlock {
  field: BlockField;
  kind: BadKind;
  /** What the row sends, as a user would say it. */
  name: string;
  code: AuthorityCode;
  /**
   * The value to send as `authority`, built from a well-formed unsigned block. Rows of fields that are
   * only required for signed blocks (issued_at, signature when missing) are not in this table: their
   * absence is fine for an unsigned block and is tested against a policy that lists issuers.
   */
  make: (good: Record<string, unknown>) => unknown;
}

const without = (good: Record<string, unknown>, field: string) => {
  const { [field]: _dropped, ...rest } = good;
  return rest;
};

function rows(
  field: Exclude<BlockField, "(block)">,
  code: AuthorityCode,
  bad: Partial<Record<BadKind, [string, unknown][]>>,
  missing: boolean,
): MalformedBlock[] {
  const out: MalformedBlock[] = [];
  if (missing) {
    out.push({ field, kind: "missing", name: `no ${field}`, code, make: (good) => without(good, field) });
  }
  for (const [kind, values] of Object.entries(bad) as [BadKind, [string, unknown][]][]) {
    for (const [name, value] of values) {
      out.push({ field, kind, name, code, make: (good) => ({ ...good, [field]: value }) });
    }
  }
  return out;
}

/** Every malformed block, grouped by field in the order the checks run. */
export const MALFORMED_BLOCKS: readonly MalformedBlock[] = [
  { field: "(block)", kind: "not an object", name: "a number", code: "AUTHORITY_INVALID", make: () => 42 },
  {
    field: "(block)",
    kind: "not an object",
    name: "a list holding a block",
    code: "AUTHORITY_INVALID",
    make: (good) => [good],
  },
  {
    field: "(block)",
    kind: "unknown field",
    name: "an extra admin field",
    code: "AUTHORITY_INVALID",
    make: (good) => ({ ...good, admin: true }),
  },
  ...rows("issued_by", "AUTHORITY_ISSUER_INVALID", {
    "wrong type": [["a number", 42], ["null", null], ["a list", ["ops"]]],
    blank: [["an empty string", ""], ["one space", " "], ["tabs and newlines", "\t\n "]],
    "out of range": [["129 characters", "o".repeat(129)]],
  }, true),
  ...rows("scope", "AUTHORITY_SCOPE_INVALID", {
    "wrong type": [["a number", 7], ["an object", { chat: true }], ["a list with a number", [
      "chat:completions",
      7,
    ]]],
    blank: [["an empty string", ""], ["spaces", "   "], ["a list with a blank entry", [
      "chat:completions",
      " ",
    ]]],
    "out of range": [
      ["an empty list", []],
      ["65 entries", Array.from({ length: 65 }, (_, i) => i === 0 ? "chat:completions" : `extra:${i}`)],
      ["an entry of 129 characters", ["chat:completions", "s".repeat(129)]],
    ],
  }, true),
  ...rows("ttl", "AUTHORITY_TTL_INVALID", {
    "wrong type": [['the string "60"', "60"], ["null", null], ["true", true]],
    blank: [["an empty string", ""], ["a space", " "]],
    "out of range": [["zero", 0], ["negative", -5], ["fractional", 1.5], [
      `above max_ttl_s (${TABLE_MAX_TTL_S + 1})`,
      TABLE_MAX_TTL_S + 1,
    ]],
  }, true),
  ...rows("lease_id", "AUTHORITY_LEASE_INVALID", {
    "wrong type": [["a number", 123], ["null", null]],
    blank: [["an empty string", ""], ["spaces", "   "]],
    "out of range": [["129 characters", "l".repeat(129)], ["a slash", "lease/../x"], [
      "a space inside",
      "a b",
    ]],
  }, true),
  ...rows("issued_at", "AUTHORITY_SIGNATURE_INVALID", {
    "wrong type": [["a numeric string", "1700000000"], ["null", null]],
    blank: [["an empty string", ""]],
    "out of range": [["negative", -1], ["fractional", 1700000000.5], ["beyond 2^53", 2 ** 53]],
  }, false),
  ...rows("signature", "AUTHORITY_SIGNATURE_INVALID", {
    "wrong type": [["a number", 5], ["null", null]],
    blank: [["an empty string", ""], ["a space", " "]],
    "out of range": [["129 characters", "A".repeat(129)], ["standard base64 with padding", "ab+/cd=="]],
  }, false),
];
