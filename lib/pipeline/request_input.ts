import { isFieldName } from "../client_text.ts";
import { type RoutingContract, routingContractSchema } from "../contract/mod.ts";
import { canonicalJson } from "../edr/mod.ts";
import { concatBytes } from "../bytes.ts";
import { type Deadline, deadlineAfter } from "../providers/mod.ts";
import { RouterError } from "./errors.ts";

/** One decoder for every body: a whole-buffer `decode` keeps no state between calls. */
const utf8 = new TextDecoder();

/** Options for `readJsonBody`. */
export interface ReadBodyOptions {
  /** The whole body must arrive within this time (a 408 otherwise); no bound without it. */
  timeoutMs?: number;
}

/**
 * Reads a JSON object body of at most `maxBytes` bytes; a 400/408/413 `RouterError` says what is wrong.
 * Bytes are counted as they arrive, so a body over the limit is refused after `maxBytes`, whether or not
 * it declared its length, and never held whole.
 */
export async function readJsonBody(
  request: Request,
  maxBytes: number,
  options: ReadBodyOptions = {},
): Promise<Record<string, unknown>> {
  const declared = request.headers.get("content-length");
  if (declared !== null && Number(declared) > maxBytes) throw tooLarge(maxBytes);
  const bytes = declared === null
    ? await readBytes(request, maxBytes, options.timeoutMs)
    : await readDeclared(request, options.timeoutMs);
  const text = utf8.decode(bytes);
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
 * A body of a declared length (already checked against the limit, and held to it by the HTTP framing), read
 * whole in one call: the chunk-by-chunk reader's promise per chunk is what most bodies do not need. A body
 * that stops arriving is answered at the deadline; its read ends when the connection does.
 */
async function readDeclared(request: Request, timeoutMs: number | undefined): Promise<Uint8Array> {
  const whole = request.bytes().catch(() => {
    throw clientGone();
  });
  if (timeoutMs === undefined) return await whole;
  let deadline: Deadline | undefined;
  const late = new Promise<never>((_, reject) => {
    deadline = deadlineAfter(timeoutMs, () => reject(bodyTimeout(timeoutMs)), { keepAlive: false });
  });
  try {
    return await Promise.race([whole, late]);
  } finally {
    deadline!.cancel();
    whole.catch(() => {});
  }
}

/** The body's bytes, read chunk by chunk and cancelled as soon as they pass `maxBytes` or the deadline. */
async function readBytes(
  request: Request,
  maxBytes: number,
  timeoutMs: number | undefined,
): Promise<Uint8Array> {
  const body = request.body;
  if (body === null) return new Uint8Array(0);
  const reader = body.getReader();
  let timedOut = false;
  const deadline = timeoutMs === undefined ? null : deadlineAfter(timeoutMs, () => {
    timedOut = true;
    reader.cancel().catch(() => {});
  }, { keepAlive: false });
  const parts: Uint8Array[] = [];
  let total = 0;
  try {
    while (true) {
      let next: ReadableStreamReadResult<Uint8Array>;
      try {
        next = await reader.read();
      } catch {
        if (timedOut) throw bodyTimeout(timeoutMs!);
        throw clientGone();
      }
      if (timedOut) throw bodyTimeout(timeoutMs!);
      if (next.done) break;
      total += next.value.byteLength;
      if (total > maxBytes) {
        reader.cancel().catch(() => {});
        throw tooLarge(maxBytes);
      }
      parts.push(next.value);
    }
  } finally {
    deadline?.cancel();
  }
  return parts.length === 0 ? new Uint8Array(0) : concatBytes(parts);
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
    const field = ["routing_contract", ...issue.path.map(String)].join(".");
    if (issue.code === "unrecognized_keys") {
      // zod's own message repeats the names verbatim. The client is told the names shaped like field names;
      // the record, kept whatever the classification, holds none of them.
      const unknown = `${field} has fields the contract does not know`;
      throw badContract(
        `${unknown} (${namedKeys(issue.keys)}); remove them`,
        field,
        `${unknown}; remove them`,
      );
    }
    throw badContract(`invalid routing_contract field ${field}: ${issue.message}; fix the contract`, field);
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

function badContract(message: string, param: string | null, recordedMessage?: string): RouterError {
  return new RouterError(400, "INVALID_ROUTING_CONTRACT", message, {
    param,
    recordedMessage,
    failureType: "validation_error",
    stage: "parse",
    shouldRetry: false,
  });
}

function bodyTimeout(timeoutMs: number): RouterError {
  return new RouterError(
    408,
    "REQUEST_BODY_TIMEOUT",
    `the request body did not arrive within ${timeoutMs} ms; send the whole body at once`,
    { failureType: "validation_error", stage: "parse", shouldRetry: true },
  );
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

/**
 * Unknown member names as the error may repeat them: only names shaped like field names, at most three,
 * so a client cannot put free text (or a megabyte) into the answer and the record through a key.
 */
function namedKeys(keys: unknown[]): string {
  const named = keys.filter((k): k is string => typeof k === "string" && isFieldName(k)).slice(0, 3);
  const rest = keys.length - named.length;
  return [...named, ...(rest > 0 ? [`${rest} more not shaped like a field name`] : [])].join(", ");
}
