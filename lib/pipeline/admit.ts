/**
 * Admission: everything a request must pass before routing is asked. It reads the body, checks the client
 * key, parses the request in its dialect, makes its canonical form (a request the record could not hash
 * is refused here, before any provider is called), applies the routing contract and checks the authority.
 * What it learns goes into the exchange's admission facts; a refusal is a `RouterError`.
 * @module
 */
import { checkAuthority, checkClientKey, LeaseStoreUnavailableError } from "../authority/mod.ts";
import { effectiveContract } from "../contract/mod.ts";
import type { Dialect } from "./dialects.ts";
import { RouterError } from "./errors.ts";
import {
  assertCanonicalizable,
  assertCanonicalizableHeader,
  findUncanonicalizable,
  uncanonicalizableError,
} from "./canonical_input.ts";
import type { Pipeline } from "./context.ts";
import type { Exchange } from "./exchange.ts";
import { parseContract, readJsonBody } from "./request_input.ts";

/** Admits `request` into `exchange`, or throws the refusal. */
export async function admit(
  pipeline: Pipeline,
  request: Request,
  dialect: Dialect,
  exchange: Exchange,
): Promise<void> {
  const { policy } = pipeline;
  requireRecordable(pipeline, exchange);
  const body = await readJsonBody(request, policy.limits.max_body_bytes, {
    timeoutMs: policy.limits.body_timeout_ms,
  });

  exchange.stage = "authenticate";
  const key = checkClientKey(request.headers, {
    keys: policy.client_keys,
    allowXApiKey: dialect.allowXApiKey,
  });
  if (!key.ok) {
    throw new RouterError(401, key.code, key.message, {
      failureType: "authentication_error",
      stage: "authenticate",
      shouldRetry: false,
    });
  }

  exchange.stage = "parse";
  const { routing_contract: rawContract, authority: rawAuthority, ...chatBody } = body;
  const contractHeader = request.headers.get("x-routing-contract");
  const authorityHeader = request.headers.get("x-authority");
  // Everything the record takes from the client must have a canonical form before anything is called.
  assertCanonicalizable(rawContract, "routing_contract");
  assertCanonicalizable(rawAuthority, "authority");
  assertCanonicalizableHeader(contractHeader, "x-routing-contract");
  assertCanonicalizableHeader(authorityHeader, "x-authority");
  const contract = parseContract(rawContract, contractHeader);
  const chat = dialect.parse(chatBody);
  try {
    exchange.admit(chat);
  } catch (error) {
    // The fast check is the canonicalizer itself; on failure, find the field as the client named it.
    const found = findUncanonicalizable(chatBody, "");
    if (found) throw uncanonicalizableError(found);
    throw error;
  }
  exchange.stream = chat.stream === true;
  exchange.contract = effectiveContract(contract, policy);
  exchange.capture = policy.capture_classifications.includes(exchange.contract.classification);

  exchange.stage = "authorize";
  const authority = await checkAuthority(rawAuthority, {
    required: exchange.contract.authority_required,
    neededScope: dialect.neededScope,
    policy: policy.authority,
    now: pipeline.now(),
    leases: pipeline.deps.leases,
    secrets: pipeline.deps.secrets,
    header: authorityHeader,
  }).catch(leaseStoreUnavailable);
  if (!authority.ok) {
    throw new RouterError(403, authority.code, authority.message, {
      failureType: "authority_violation",
      stage: "authorize",
      shouldRetry: false,
    });
  }
  exchange.authority = authority.summary;
}

/** A shared lease store out of reach fails the request closed: 503, retryable, no provider called. */
function leaseStoreUnavailable(error: unknown): never {
  if (!(error instanceof LeaseStoreUnavailableError)) throw error;
  throw new RouterError(
    503,
    "LEASE_STORE_UNAVAILABLE",
    `${error.message}, so the lease could not be checked and no provider was called; retry shortly`,
    { failureType: "uncaught_exception", stage: "authorize", shouldRetry: true, retryAfter: 1 },
  );
}

/** Throws the 503 `EDR_UNAVAILABLE` while the writer cannot make records durable. */
export function requireRecordable(pipeline: Pipeline, exchange: Exchange): void {
  const state = pipeline.deps.edr.health();
  if (state.state === "ok") return;
  throw new RouterError(
    503,
    "EDR_UNAVAILABLE",
    "the decision record cannot be written now (the artifacts disk failed), so no provider was called; " +
      "the router retries the disk by itself: retry later, and see GET /readyz",
    { failureType: "uncaught_exception", stage: exchange.stage },
  );
}
