/** Anthropic's error body and error types, as the Anthropic SDKs read them. */
import type { ClientErrorInfo } from "../types.ts";

/**
 * Anthropic's error type for an HTTP status and our reason code: 529, and an upstream's own overload
 * (`UPSTREAM_OVERLOADED`), are `overloaded_error`; any other 5xx, 503 refusals included (a SENSITIVE
 * request while the local host is unfit is not an overload elsewhere), is `api_error`; a 4xx has its
 * status's type, `invalid_request_error` for the rest.
 */
export function anthropicErrorType(status: number, code?: string): string {
  if (status === 529 || code === "UPSTREAM_OVERLOADED") return "overloaded_error";
  switch (status) {
    case 400:
      return "invalid_request_error";
    case 401:
      return "authentication_error";
    case 403:
      return "permission_error";
    case 404:
      return "not_found_error";
    case 413:
      return "request_too_large";
    case 429:
      return "rate_limit_error";
  }
  return status >= 500 ? "api_error" : "invalid_request_error";
}

/** Anthropic's error body for a client-side error (`{"type":"error","error":{"type","message"}}`). */
export function anthropicErrorBody(
  info: ClientErrorInfo,
): { type: "error"; error: { type: string; message: string; code: string; param?: string } } {
  // `code` is our reason code, as on /v1/chat/completions; Anthropic's SDKs keep unknown members. `param`
  // names the field a refusal blames, only when there is one.
  const error = { type: anthropicErrorType(info.status, info.code), message: info.message, code: info.code };
  return { type: "error", error: info.param ? { ...error, param: info.param } : error };
}
