/**
 * The authority check a request passes before routing: shape, issuer, scope, ttl, lease id, signature,
 * time window, needed scope, and finally the single-use lease. The order is deliberate: nothing a
 * signature covers is trusted (for scope decisions or lease burning) before the signature is verified.
 */
import { textHash } from "../client_text.ts";
import canonicalize from "canonicalize";
import { hashLeaseId, type LeaseReserver } from "./lease_store.ts";
import { signingPayload, verifyEd25519, verifyHmac } from "./signature.ts";
import {
  AUTHORITY_LIMITS,
  type AuthorityBlock,
  type AuthorityCode,
  authorityFieldSchemas,
  type AuthorityPolicy,
  type AuthoritySummary,
  type NeededScope,
  neededScopeSchema,
} from "./schema.ts";

/** Options for `checkAuthority`; clocks, secrets and the lease store are injected. */
export interface CheckAuthorityOptions {
  /** The effective flag: policy.required OR the request contract's authority_required. */
  required: boolean;
  /** The scope the route needs. */
  neededScope: NeededScope;
  /** The parsed `authority` policy section. */
  policy: AuthorityPolicy;
  /** The current time in milliseconds since the epoch. */
  now: number;
  /** Where leases are reserved (a `LeaseStore` in the router). */
  leases: LeaseReserver;
  /** Environment lookup for the issuers' HMAC secrets. */
  secrets: Record<string, string | undefined>;
  /** The raw `x-authority` header value, when the request carried one. */
  header?: string | null;
}

/** The outcome of `checkAuthority`: a summary for the EDR (null when no block was sent), or a refusal. */
export type AuthorityResult =
  | { ok: true; summary: AuthoritySummary | null }
  | { ok: false; code: AuthorityCode; message: string };

const ACCEPTED_FOR: Record<NeededScope, readonly string[]> = {
  "chat:completions": ["chat:completions"],
  // /v1/messages is chat completions under Anthropic's spelling, so either scope admits it.
  "messages:create": ["messages:create", "chat:completions"],
  "metrics:read": ["metrics:read"],
};

function refuse(code: AuthorityCode, message: string): AuthorityResult {
  return { ok: false, code, message };
}

/** What each block field must be, and the code its failure gets; checked in this order. */
const FIELD_RULES: Record<
  keyof typeof authorityFieldSchemas,
  { code: AuthorityCode; required: boolean; want: (policy: AuthorityPolicy) => string }
> = {
  issued_by: {
    code: "AUTHORITY_ISSUER_INVALID",
    required: true,
    want: () => `a non-blank issuer id of at most ${AUTHORITY_LIMITS.issuerLength} characters`,
  },
  scope: {
    code: "AUTHORITY_SCOPE_INVALID",
    required: true,
    want: () =>
      `a non-blank string or a list of 1 to ${AUTHORITY_LIMITS.scopeCount} non-blank strings, each at most ${AUTHORITY_LIMITS.scopeLength} characters`,
  },
  ttl: {
    code: "AUTHORITY_TTL_INVALID",
    required: true,
    want: (policy) => `a whole number of seconds from 1 to ${policy.max_ttl_s}`,
  },
  lease_id: {
    code: "AUTHORITY_LEASE_INVALID",
    required: true,
    want: () =>
      `1 to ${AUTHORITY_LIMITS.leaseIdLength} characters of letters, digits, '.', '_', ':' or '-' (a fresh UUID works)`,
  },
  issued_at: {
    code: "AUTHORITY_SIGNATURE_INVALID",
    required: false,
    want: () => "whole unix seconds (a non-negative integer)",
  },
  signature: {
    code: "AUTHORITY_SIGNATURE_INVALID",
    required: false,
    want: () =>
      `base64url without padding, at most ${AUTHORITY_LIMITS.signatureLength} characters, as \`deno task authority sign\` prints it`,
  },
};

const FIELD_ORDER = Object.keys(FIELD_RULES) as (keyof typeof FIELD_RULES)[];

/**
 * The first field that is missing, of the wrong JSON type, blank or out of range, as a refusal with
 * that field's code (or an issuer the policy does not list); null when every field is well formed.
 * Messages name the field and never echo a value, except an untrusted issuer id.
 */
function firstFieldProblem(fields: Record<string, unknown>, policy: AuthorityPolicy): AuthorityResult | null {
  for (const name of FIELD_ORDER) {
    const rule = FIELD_RULES[name];
    const value = fields[name];
    if (value === undefined) {
      if (!rule.required) continue;
      return refuse(rule.code, `authority is missing ${name}; send ${rule.want(policy)}`);
    }
    const valid = authorityFieldSchemas[name].safeParse(value).success &&
      (name !== "ttl" || (value as number) <= policy.max_ttl_s);
    if (!valid) return refuse(rule.code, `authority ${name} must be ${rule.want(policy)}`);
    if (name === "issued_by" && policy.issuers.length > 0 && !policy.issuers.some((i) => i.id === value)) {
      return refuse("AUTHORITY_ISSUER_INVALID", `issuer "${value}" is not trusted here; use a listed issuer`);
    }
  }
  return null;
}

/** Names a client's field names for a message: quoted, at most three, each cut to 40 characters. */
function fieldNames(names: string[]): string {
  const shown = names.slice(0, 3).map((name) =>
    JSON.stringify(name.length > 40 ? `${name.slice(0, 40)}…` : name)
  );
  return names.length > 3 ? `${shown.join(", ")} and ${names.length - 3} more` : shown.join(", ");
}

type Resolved = { present: false } | { present: true; value: unknown } | { error: string };

function parseJson(text: string, where: string): Resolved {
  try {
    return { present: true, value: JSON.parse(text) };
  } catch {
    return { error: `${where} is not valid JSON; send the authority block as a JSON object` };
  }
}

/** Picks the block from the body value and the header; a string body value is parsed as JSON. */
function resolveInput(raw: unknown, header: string | null | undefined): Resolved {
  const fromBody: Resolved = raw === undefined || raw === null
    ? { present: false }
    : typeof raw === "string"
    ? parseJson(raw, "authority")
    : { present: true, value: raw };
  const fromHeader: Resolved = header === undefined || header === null
    ? { present: false }
    : parseJson(header, "the x-authority header");
  if ("error" in fromBody) return fromBody;
  if ("error" in fromHeader) return fromHeader;
  if (!fromHeader.present) return fromBody;
  if (!fromBody.present) return fromHeader;
  if (canonicalize(fromBody.value) !== canonicalize(fromHeader.value)) {
    return {
      error:
        "authority was sent in both the body and the x-authority header with different values; send it once",
    };
  }
  return fromBody;
}

/** Validates an authority block and reserves its lease; the request path's one call. */
export async function checkAuthority(raw: unknown, options: CheckAuthorityOptions): Promise<AuthorityResult> {
  const { policy, now } = options;
  const input = resolveInput(raw, options.header);
  if ("error" in input) return refuse("AUTHORITY_INVALID", input.error);
  if (!input.present) {
    if (options.required) {
      return refuse(
        "AUTHORITY_MISSING",
        "this request requires an authority block; send one in `authority` or x-authority",
      );
    }
    return { ok: true, summary: null };
  }

  const value = input.value;
  if (typeof value !== "object" || value === null || Array.isArray(value)) {
    return refuse(
      "AUTHORITY_INVALID",
      "authority must be a JSON object with issued_by, scope, ttl and lease_id",
    );
  }
  const fields = value as Record<string, unknown>;
  const unknown = Object.keys(fields).filter((key) => !Object.hasOwn(FIELD_RULES, key));
  if (unknown.length > 0) {
    return refuse(
      "AUTHORITY_INVALID",
      `authority has an unknown field (${
        fieldNames(unknown)
      }); send only issued_by, scope, ttl, lease_id, issued_at and signature`,
    );
  }
  const problem = firstFieldProblem(fields, policy);
  if (problem !== null) return problem;
  const block = fields as AuthorityBlock;

  // firstFieldProblem has refused issuers the policy does not list, so undefined here means no issuers.
  const issuer = policy.issuers.find((candidate) => candidate.id === block.issued_by);
  const scopes = typeof block.scope === "string" ? [block.scope] : block.scope;

  const signed = issuer !== undefined;
  if (issuer !== undefined) {
    if (block.signature === undefined || block.issued_at === undefined) {
      return refuse(
        "AUTHORITY_SIGNATURE_INVALID",
        `issuer "${issuer.id}" must sign its blocks; include issued_at and signature`,
      );
    }
    const payload = signingPayload(fields);
    let valid: boolean;
    if (issuer.hmac_secret_env !== undefined) {
      const secret = options.secrets[issuer.hmac_secret_env];
      if (secret === undefined || secret.length === 0) {
        return refuse(
          "AUTHORITY_SIGNATURE_INVALID",
          `the router has no key for issuer "${issuer.id}"; ask the operator to configure its secret`,
        );
      }
      valid = verifyHmac(payload, block.signature, secret);
    } else {
      valid = await verifyEd25519(payload, block.signature, issuer.ed25519_public_key ?? "");
    }
    if (!valid) {
      return refuse(
        "AUTHORITY_SIGNATURE_INVALID",
        "authority signature does not verify; re-sign the block unchanged",
      );
    }
  } else if (block.signature !== undefined) {
    return refuse(
      "AUTHORITY_SIGNATURE_INVALID",
      `the router lists no key for issuer "${block.issued_by}"; drop the signature or ask the operator to list the issuer`,
    );
  } else if (!policy.allow_unsigned) {
    return refuse(
      "AUTHORITY_SIGNATURE_INVALID",
      "unsigned authority blocks are not accepted here; send a signed block",
    );
  }

  const nowS = now / 1000;
  let leaseExpiresAtMs: number;
  if (block.issued_at !== undefined) {
    // issued_at of an unsigned block is unverified, but using it only to refuse can never widen access.
    if (block.issued_at > nowS + policy.clock_skew_s) {
      return refuse(
        "AUTHORITY_EXPIRED",
        "issued_at lies in the future beyond the allowed clock skew; check the issuer's clock",
      );
    }
    if (block.issued_at + block.ttl + policy.clock_skew_s < nowS) {
      return refuse("AUTHORITY_EXPIRED", "authority block has expired; ask the issuer for a fresh one");
    }
  }
  if (signed) {
    leaseExpiresAtMs = (block.issued_at! + block.ttl + policy.clock_skew_s) * 1000;
  } else {
    // Unsigned blocks carry no trustworthy time, so their lease id is held for the long retention window.
    const retention = Math.max(block.ttl, policy.unsigned_lease_retention_s);
    leaseExpiresAtMs = Math.ceil(now) + retention * 1000;
  }

  const accepted = ACCEPTED_FOR[options.neededScope];
  if (!scopes.some((scope) => accepted.includes(scope))) {
    return refuse(
      "AUTHORITY_SCOPE_DENIED",
      `authority does not grant ${accepted.join(" or ")}; ask the issuer for a block with that scope`,
    );
  }

  const verdict = await options.leases.reserve(block.lease_id, leaseExpiresAtMs, now);
  if (verdict === "replay") {
    return refuse("LEASE_REPLAY", "this lease_id was already used; every request needs a fresh lease_id");
  }

  // Members in RFC 8785 order, as the EDR keeps them. The record keeps no client-chosen free text: an
  // issuer is named only when the policy lists it and the block proved it with a signature, a scope only
  // when it is one the router knows; anything else is kept as `sha256:<hex>` of its text.
  const summary: AuthoritySummary = {
    issued_by: signed ? block.issued_by : textHash(block.issued_by),
    lease_id_sha256: hashLeaseId(block.lease_id),
    scopes: scopes.map((scope) => KNOWN_SCOPES.has(scope) ? scope : textHash(scope)),
    signed,
    ttl: block.ttl,
  };
  return { ok: true, summary };
}

const KNOWN_SCOPES = new Set<string>(neededScopeSchema.options);

/** The environment variables holding the policy's issuer HMAC secrets (the only ones the server may read). */
export function issuerSecretEnvNames(policy: AuthorityPolicy): string[] {
  return policy.issuers.flatMap((issuer) => (issuer.hmac_secret_env ? [issuer.hmac_secret_env] : []));
}

/** Names the issuers whose verification key is unusable with these secrets, for a startup warning. */
export function unusableIssuers(
  policy: AuthorityPolicy,
  secrets: Record<string, string | undefined>,
): string[] {
  return policy.issuers
    .filter((issuer) => issuer.hmac_secret_env !== undefined && !secrets[issuer.hmac_secret_env])
    .map((issuer) => issuer.id);
}
