/**
 * Typed authority blocks, trusted issuers, the durable single-use lease store and client API keys.
 * The request path is two calls: `checkClientKey(headers, …)` then `checkAuthority(body.authority, …)`.
 */
export {
  AUTHORITY_LIMITS,
  type AuthorityBlock,
  authorityBlockSchema,
  type AuthorityCode,
  type AuthorityPolicy,
  authorityPolicySchema,
  type AuthoritySummary,
  type ClientKey,
  clientKeySchema,
  type ClientKeysPolicy,
  clientKeysPolicySchema,
  DEFAULT_UNSIGNED_LEASE_RETENTION_S,
  type Issuer,
  issuerSchema,
  LEASE_ID_PATTERN,
  type NeededScope,
  neededScopeSchema,
} from "./schema.ts";
export {
  type AuthorityResult,
  checkAuthority,
  type CheckAuthorityOptions,
  issuerSecretEnvNames,
  unusableIssuers,
} from "./check.ts";
export {
  hashLeaseId,
  type LeaseReserver,
  LeaseStore,
  type LeaseStoreOptions,
  LeaseStoreUnavailableError,
} from "./lease_store.ts";
export {
  checkClientKey,
  type CheckClientKeyOptions,
  type ClientKeyResult,
  hashClientKey,
} from "./client_keys.ts";
export {
  type Ed25519KeyPair,
  generateEd25519KeyPair,
  importEd25519PrivateKey,
  signAuthority,
  type SigningKey,
  signingPayload,
} from "./signature.ts";
