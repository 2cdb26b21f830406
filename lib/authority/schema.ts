/**
 * Schemas for the typed authority block, the server policy's `authority` section and its `client_keys`
 * list. Types flow from these; `check.ts` applies the block's field schemas one field at a time so that
 * each failure gets its field's reason code.
 */
import { z } from "zod";

/**
 * Bounds on an authority block's strings, so hostile blocks stay cheap to handle: `issued_by`, each scope
 * string, the number of scopes, the lease id and the signature (43 characters for HMAC, 86 for Ed25519).
 */
export const AUTHORITY_LIMITS = {
  issuerLength: 128,
  scopeLength: 128,
  scopeCount: 64,
  leaseIdLength: 128,
  signatureLength: 128,
};

/** Characters a lease id may use: letters, digits and `. _ : -` (safe in logs, paths and headers). */
export const LEASE_ID_PATTERN = /^[A-Za-z0-9._:-]+$/;

/** Characters of base64url without padding, the only form a signature takes. */
const BASE64URL_PATTERN = /^[A-Za-z0-9_-]+$/;

/** The scopes a route can demand of an authority block. */
export const neededScopeSchema = z.enum(["chat:completions", "messages:create", "metrics:read"]);

/** A scope a route can demand of an authority block. */
export type NeededScope = z.infer<typeof neededScopeSchema>;

/** A string that is not empty and not only whitespace. */
const notBlank = (text: string) => text.trim().length > 0;

const scopeStringSchema = z.string().max(AUTHORITY_LIMITS.scopeLength).refine(notBlank);

/**
 * One schema per field of an authority block. `check.ts` applies them one at a time so that a field's
 * failure (missing, wrong type, blank, out of range) gets that field's reason code; `ttl`'s upper bound
 * is the policy's `max_ttl_s` and is applied there.
 */
export const authorityFieldSchemas = {
  issued_by: z.string().max(AUTHORITY_LIMITS.issuerLength).refine(notBlank),
  scope: z.union([scopeStringSchema, z.array(scopeStringSchema).min(1).max(AUTHORITY_LIMITS.scopeCount)]),
  ttl: z.number().int().positive(),
  lease_id: z.string().min(1).max(AUTHORITY_LIMITS.leaseIdLength).regex(LEASE_ID_PATTERN),
  issued_at: z.number().int().nonnegative(),
  signature: z.string().min(1).max(AUTHORITY_LIMITS.signatureLength).regex(BASE64URL_PATTERN),
};

/** The fully valid authority block (strict: unknown fields are rejected). */
export const authorityBlockSchema = z.strictObject({
  issued_by: authorityFieldSchemas.issued_by,
  scope: authorityFieldSchemas.scope,
  ttl: authorityFieldSchemas.ttl,
  lease_id: authorityFieldSchemas.lease_id,
  issued_at: authorityFieldSchemas.issued_at.optional(),
  signature: authorityFieldSchemas.signature.optional(),
});

/** A valid authority block as a client sends it. */
export type AuthorityBlock = z.infer<typeof authorityBlockSchema>;

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
const BASE64_32_BYTES = /^[A-Za-z0-9+/]{43}=$/;

/** One trusted issuer: its id and exactly one verification key (an HMAC secret's env var, or Ed25519). */
export const issuerSchema = z.strictObject({
  id: z.string().min(1).max(AUTHORITY_LIMITS.issuerLength),
  hmac_secret_env: z.string().regex(ENV_NAME, "use an environment variable name like HI_ISSUER_OPS_SECRET")
    .optional(),
  ed25519_public_key: z.string().regex(
    BASE64_32_BYTES,
    "use the raw 32-byte Ed25519 public key in standard base64 (as `deno task authority keygen` prints it)",
  ).optional(),
}).refine((issuer) => (issuer.hmac_secret_env === undefined) !== (issuer.ed25519_public_key === undefined), {
  message: "give each issuer exactly one of hmac_secret_env or ed25519_public_key",
});

/** A trusted issuer as the policy lists it. */
export type Issuer = z.infer<typeof issuerSchema>;

/** Default retention of unsigned lease ids: 30 days. */
export const DEFAULT_UNSIGNED_LEASE_RETENTION_S = 30 * 24 * 3600;

/** The server policy's `authority` section, with every default applied (`undefined` parses to defaults). */
export const authorityPolicySchema = z.strictObject({
  required: z.boolean().default(false),
  allow_unsigned: z.boolean().default(true),
  max_ttl_s: z.number().int().positive().default(3600),
  clock_skew_s: z.number().int().nonnegative().max(3600).default(30),
  unsigned_lease_retention_s: z.number().int().positive().default(DEFAULT_UNSIGNED_LEASE_RETENTION_S),
  issuers: z.array(issuerSchema).default([]),
}).superRefine((policy, ctx) => {
  const seen = new Set<string>();
  for (const [index, issuer] of policy.issuers.entries()) {
    if (seen.has(issuer.id)) {
      ctx.addIssue({
        code: "custom",
        path: ["issuers", index, "id"],
        message: `issuer id "${issuer.id}" is listed twice; keep one entry per issuer`,
      });
    }
    seen.add(issuer.id);
  }
  if (policy.unsigned_lease_retention_s < policy.max_ttl_s) {
    ctx.addIssue({
      code: "custom",
      path: ["unsigned_lease_retention_s"],
      message: "unsigned_lease_retention_s must be at least max_ttl_s",
    });
  }
}).prefault({});

/** The server policy's `authority` section after parsing. */
export type AuthorityPolicy = z.output<typeof authorityPolicySchema>;

/** One client API key as the policy lists it: an id for EDRs and logs, and the sha256 hex of the key. */
export const clientKeySchema = z.strictObject({
  id: z.string().min(1).max(128),
  sha256: z.string().regex(/^[0-9a-fA-F]{64}$/, "give the sha256 of the key as 64 hex characters")
    .transform((hex) => hex.toLowerCase()),
});

/** A client API key entry after parsing. */
export type ClientKey = z.output<typeof clientKeySchema>;

/** The server policy's `client_keys` list (default empty: no client authentication). */
export const clientKeysPolicySchema = z.array(clientKeySchema).superRefine((keys, ctx) => {
  const ids = new Set<string>();
  for (const [index, key] of keys.entries()) {
    if (ids.has(key.id)) {
      ctx.addIssue({
        code: "custom",
        path: [index, "id"],
        message: `client key id "${key.id}" is listed twice; give each key its own id`,
      });
    }
    ids.add(key.id);
  }
}).default([]);

/** The server policy's `client_keys` list after parsing. */
export type ClientKeysPolicy = z.output<typeof clientKeysPolicySchema>;

/** What an EDR records of an accepted block: never the signature, never the raw lease id. */
export interface AuthoritySummary {
  issued_by: string;
  scopes: string[];
  lease_id_sha256: string;
  signed: boolean;
  ttl: number;
}

/** Every reason code `checkAuthority` can return. */
export type AuthorityCode =
  | "AUTHORITY_MISSING"
  | "AUTHORITY_INVALID"
  | "AUTHORITY_ISSUER_INVALID"
  | "AUTHORITY_SCOPE_INVALID"
  | "AUTHORITY_SCOPE_DENIED"
  | "AUTHORITY_TTL_INVALID"
  | "AUTHORITY_LEASE_INVALID"
  | "LEASE_REPLAY"
  | "AUTHORITY_EXPIRED"
  | "AUTHORITY_SIGNATURE_INVALID";
