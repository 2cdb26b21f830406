/**
 * zod issues as a client's 400: a bad value names its path (`INVALID_REQUEST`), an unknown member inside an
 * object is refused by name (`UNSUPPORTED_FIELD`). Shared by both dialects.
 */
import { isFieldName } from "../client_text.ts";
import { InboundError } from "./types.ts";

/** The parts of a zod issue the router reads. */
export type Issue = { code: string; path: PropertyKey[]; keys?: unknown; message: string };

/** A 400 `UNSUPPORTED_FIELD` naming `param`; the record keeps `recordedMessage` when given. */
export function unsupportedField(
  param: string | null,
  message: string,
  recordedMessage?: string,
): InboundError {
  return new InboundError(400, "UNSUPPORTED_FIELD", message, { param, recordedMessage });
}

/** The 400 `INVALID_REQUEST` for the first of zod's issues: a bad value, named by its path. */
export function validationError(issues: readonly { path: PropertyKey[]; message: string }[]): InboundError {
  const issue = issues[0];
  const param = issue.path.map(String).join(".") || null;
  const where = param ?? "the request body";
  return new InboundError(
    400,
    "INVALID_REQUEST",
    `invalid value for ${where}: ${issue.message}; fix it and retry`,
    {
      param,
    },
  );
}

/** A JSON path as a client reads it (`messages[2].content[0]`), or null when a step is not a field name. */
function jsonPath(path: PropertyKey[]): string | null {
  let text = "";
  for (const step of path) {
    if (typeof step === "number") text += `[${step}]`;
    else if (typeof step === "string" && isFieldName(step)) text += text === "" ? step : `.${step}`;
    else return null;
  }
  return text;
}

/**
 * The 400 `UNSUPPORTED_FIELD` for the first unknown member inside an object of the request (`issues` from
 * a strict zod schema), or undefined when no issue is one. `param` is the member's JSON path
 * (`messages[2].audio`) when its name looks like a field name, else the object's; the record's message
 * holds the object's path only, never the client's name. `api` names the dialect (`OpenAI's chat
 * completions API`).
 */
export function unknownMemberError(issues: readonly Issue[], api: string): InboundError | undefined {
  const issue = issues.find((i) => i.code === "unrecognized_keys" && i.path.length > 0);
  if (issue === undefined || !Array.isArray(issue.keys)) return undefined;
  const key = String(issue.keys[0]);
  const path = jsonPath(issue.path);
  const where = path ?? "an object of the request";
  const recorded = `${where} has a member ${api} does not define or the router does not carry; remove it`;
  if (!isFieldName(key) || path === null) return unsupportedField(path, recorded);
  const param = `${where}.${key}`;
  return unsupportedField(
    param,
    `${param} is not a member of ${api} the router carries, and leaving it out could change the answer; remove it or fix its spelling`,
    recorded,
  );
}
