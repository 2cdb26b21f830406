import { type RoutingContract, routingContractSchema } from "../contract/mod.ts";
import { canonicalJson } from "../edr/mod.ts";
import { RouterError } from "./errors.ts";

/** Reads a JSON object body within the size limit; a 400/413 `RouterError` says what is wrong. */
export async function readJsonBody(request: Request, maxBytes: number): Promise<Record<string, unknown>> {
  const declared = Number(request.headers.get("content-length") ?? "0");
  if (declared > maxBytes) throw tooLarge(maxBytes);
  let text: string;
  try {
    text = await request.text();
  } catch {
    throw clientGone();
  }
  if (text.length > maxBytes) throw tooLarge(maxBytes);
  let body: unknown;
  try {
    body = JSON.parse(text);
  } catch {
    throw new RouterError(400, "INVALID_JSON", "the request body is not valid JSON; send a JSON object", {
      failureType: "validation_error",
      stage: "parse",
      shouldRetry: false,
    });
  }
  if (typeof body !== "object" || body === null || Array.isArray(body)) {
    throw new RouterError(400, "INVALID_REQUEST", "the request body must be a JSON object", {
      failureType: "validation_error",
      stage: "parse",
      shouldRetry: false,
    });
  }
  return body as Record<string, unknown>;
}

/**
 * The routing contract from the body field or the `x-routing-contract` header, where `null` counts as absent.
 * When both are present they must be the same JSON value (compared canonically): a 400
 * `ROUTING_CONTRACT_CONFLICT` otherwise, so neither door can loosen what the other asked. A 400
 * `INVALID_ROUTING_CONTRACT` names a bad field.
 */
export function parseContract(fromBody: unknown, fromHeader: string | null): RoutingContract | undefined {
  const body = fromBody ?? undefined;
  const header = fromHeader === null ? undefined : parseHeader(fromHeader) ?? undefined;
  if (body !== undefined && header !== undefined && canonicalJson(body) !== canonicalJson(header)) {
    throw new RouterError(
      400,
      "ROUTING_CONTRACT_CONFLICT",
      "routing_contract was sent in both the body and the x-routing-contract header with different values; send it in one place or make them agree",
      { param: "routing_contract", failureType: "validation_error", stage: "parse", shouldRetry: false },
    );
  }
  const raw = body ?? header;
  if (raw === undefined) return undefined;
  const parsed = routingContractSchema.safeParse(raw);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const keys = "keys" in issue && Array.isArray(issue.keys) ? ` (${issue.keys.join(", ")})` : "";
    const field = ["routing_contract", ...issue.path.map(String)].join(".");
    throw badContract(
      `invalid routing_contract field ${field}${keys}: ${issue.message}; fix the contract`,
      field,
    );
  }
  return parsed.data;
}

function parseHeader(text: string): unknown {
  try {
    return JSON.parse(text);
  } catch {
    throw badContract(
      "the x-routing-contract header is not valid JSON; send the contract as a JSON object",
      null,
    );
  }
}

function badContract(message: string, param: string | null): RouterError {
  return new RouterError(400, "INVALID_ROUTING_CONTRACT", message, {
    param,
    failureType: "validation_error",
    stage: "parse",
    shouldRetry: false,
  });
}

function tooLarge(maxBytes: number): RouterError {
  return new RouterError(
    413,
    "REQUEST_TOO_LARGE",
    `the request body exceeds ${maxBytes} bytes; send a smaller request`,
    {
      failureType: "validation_error",
      stage: "parse",
      shouldRetry: false,
    },
  );
}

/** The client went away before its answer was ready. */
export function clientGone(): RouterError {
  return new RouterError(499, "CLIENT_DISCONNECTED", "the client disconnected before the answer was ready", {
    failureType: "client_disconnect",
    stage: "execute",
    shouldRetry: false,
  });
}
