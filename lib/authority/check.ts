/**
 * The authority check a request passes before routing: shape, issuer, scope, ttl, lease id, signature,
 * time window, needed scope, and finally the single-use lease. The order is deliberate: nothing a
 * signature covers is trusted (for scope decisions or lease burning) before the signature is verified.
 */
import canonicalize from "canonicalize";
import { hashLeaseId, type LeaseReserver } from "./lease_store.ts";
import { signingPayload, verifyEd25519, verifyHmac } from "./signature.ts";
import {
  AUTHORITY_LIMITS,
  type AuthorityCode,
  type AuthorityPolicy,
  authorityShapeSchema,
  type AuthoritySummary,
  LEASE_ID_PATTERN,
  type NeededScope,
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
  const shape = authorityShapeSchema.safeParse(value);
  if (!shape.success) {
    const issue = shape.error.issues[0];
    const field = issue.code === "unrecognized_keys" ? issue.keys.join(", ") : issue.path.join(".");
    const what = issue.code === "unrecognized_keys" ? "unknown field" : "missing or mistyped field";
    return refuse("AUTHORITY_INVALID", `authority has a ${what} (${field}); send only the documented fields`);
  }
  const block = shape.data;

  if (block.issued_by.length === 0 || block.issued_by.length > AUTHORITY_LIMITS.issuerLength) {
    return refuse(
      "AUTHORITY_ISSUER_INVALID",
      "issued_by must be a non-empty issuer id of at most 128 characters",
    );
  }
  const issuer = policy.issuers.find((candidate) => candidate.id === block.issued_by);
  if (policy.issuers.length > 0 && issuer === undefined) {
    return refuse(
      "AUTHORITY_ISSUER_INVALID",
      `issuer "${block.issued_by}" is not trusted here; use a listed issuer`,
    );
  }

  const scopes = typeof block.scope === "string" ? [block.scope] : block.scope;
  if (
    scopes.length === 0 || scopes.length > AUTHORITY_LIMITS.scopeCount ||
    !scopes.every((s): s is string =>
      typeof s === "string" && s.length > 0 && s.length <= AUTHORITY_LIMITS.scopeLength
    )
  ) {
    return refuse(
      "AUTHORITY_SCOPE_INVALID",
      "scope must be a non-empty string or a list of 1 to 64 non-empty strings of at most 128 characters",
    );
  }

  if (!Number.isInteger(block.ttl) || block.ttl <= 0 || block.ttl > policy.max_ttl_s) {
    return refuse(
      "AUTHORITY_TTL_INVALID",
      `ttl must be a whole number of seconds from 1 to ${policy.max_ttl_s}`,
    );
  }

  if (
    block.lease_id.length === 0 || block.lease_id.length > AUTHORITY_LIMITS.leaseIdLength ||
    !LEASE_ID_PATTERN.test(block.lease_id)
  ) {
    return refuse(
      "AUTHORITY_LEASE_INVALID",
      "lease_id must be 1 to 128 characters of letters, digits, '.', '_', ':' or '-'",
    );
  }

  const signed = issuer !== undefined;
  if (issuer !== undefined) {
    if (block.signature === undefined || block.issued_at === undefined) {
      return refuse(
        "AUTHORITY_SIGNATURE_INVALID",
        `issuer "${issuer.id}" must sign its blocks; include issued_at and signature`,
      );
    }
    const payload = signingPayload(value as Record<string, unknown>);
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

  // Members in RFC 8785 order, as the EDR keeps them.
  const summary: AuthoritySummary = {
    issued_by: block.issued_by,
    lease_id_sha256: hashLeaseId(block.lease_id),
    scopes: [...scopes],
    signed,
    ttl: block.ttl,
  };
  return { ok: true, summary };
}

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
