import { type RoutingContract, routingContractSchema } from "../contract/mod.ts";
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

/** The routing contract from the body field, else the `x-routing-contract` header; a 400 names a bad field. */
export function parseContract(fromBody: unknown, fromHeader: string | null): RoutingContract | undefined {
  let raw = fromBody;
  if (raw === undefined && fromHeader !== null) {
    try {
      raw = JSON.parse(fromHeader);
    } catch {
      throw badContract(
        "the x-routing-contract header is not valid JSON; send the contract as a JSON object",
        null,
      );
    }
  }
  if (raw === undefined || raw === null) return undefined;
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
