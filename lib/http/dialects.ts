import { isFieldName } from "../client_text.ts";
import {
  anthropicErrorBody,
  anthropicMessagesRequestSchema,
  AnthropicStreamEncoder,
  type ChatRequest,
  type ChatResult,
  type ClientResponseMeta,
  type ClientStreamEncoder,
  fromAnthropicRequest,
  OpenAIStreamEncoder,
  toAnthropicResponse,
  toOpenAIResponse,
} from "../providers/mod.ts";
import type { NeededScope } from "../authority/mod.ts";
import { parseChatBody, unknownMemberError } from "./chat_request_schema.ts";
import { openAIErrorBody, RouterError } from "./errors.ts";
import type { Endpoint } from "./exchange.ts";

/** One inbound API the router speaks: how to read its requests and write its answers and errors. */
export interface Dialect {
  endpoint: Endpoint;
  neededScope: NeededScope;
  /** Whether `x-api-key` is accepted as the client key (Anthropic clients send it). */
  allowXApiKey: boolean;
  /** Validates the body (extension fields already removed) into the canonical request. */
  parse(body: Record<string, unknown>): ChatRequest;
  responseId(requestId: string): string;
  /** Headers the dialect's SDKs read on every answer, beside `x-request-id`. */
  headers(requestId: string): Record<string, string>;
  respond(result: ChatResult, meta: ClientResponseMeta): unknown;
  encoder(meta: ClientResponseMeta, includeUsage: boolean, promptTokens: number): ClientStreamEncoder;
  errorBody(error: RouterError): unknown;
}

function validationError(issues: { path: PropertyKey[]; message: string }[]): RouterError {
  const issue = issues[0];
  const param = issue.path.map(String).join(".") || null;
  const where = param ?? "the request body";
  return new RouterError(
    400,
    "INVALID_REQUEST",
    `invalid value for ${where}: ${issue.message}; fix it and retry`,
    {
      param,
      failureType: "validation_error",
      stage: "parse",
      shouldRetry: false,
    },
  );
}

/** OpenAI chat completions (`POST /v1/chat/completions`). */
export const openAIDialect: Dialect = {
  endpoint: "/v1/chat/completions",
  neededScope: "chat:completions",
  allowXApiKey: false,
  parse(body) {
    const parsed = parseChatBody(body);
    if (!parsed.success) throw validationError(parsed.error.issues);
    return parsed.data;
  },
  responseId: (requestId) => `chatcmpl-${requestId.slice(4)}`,
  headers: () => ({}),
  respond: (result, meta) => toOpenAIResponse(result, meta),
  encoder: (meta, includeUsage) => new OpenAIStreamEncoder(meta, { includeUsage }),
  errorBody: (error) => openAIErrorBody(error),
};

/**
 * An unknown top-level field of an Anthropic request is refused by name (400 `UNSUPPORTED_FIELD`, `param`
 * the field while it looks like one); the record keeps a message without the client's text.
 */
function anthropicParseError(issues: { path: PropertyKey[]; message: string; code: string }[]): RouterError {
  const issue = issues[0] as { path: PropertyKey[]; message: string; code: string; keys?: unknown };
  if (issue.code !== "unrecognized_keys" || issue.path.length !== 0 || !Array.isArray(issue.keys)) {
    return unknownMemberError(issues, "Anthropic's Messages API") ?? validationError(issues);
  }
  const key = String(issue.keys[0]);
  return new RouterError(400, "UNSUPPORTED_FIELD", issue.message, {
    param: isFieldName(key) ? key : null,
    recordedMessage: "the request has a top-level field the router does not carry on /v1/messages; remove it",
    failureType: "validation_error",
    stage: "parse",
    shouldRetry: false,
  });
}

/** Anthropic Messages (`POST /v1/messages`), answered in Anthropic's format whoever served. */
export const anthropicDialect: Dialect = {
  endpoint: "/v1/messages",
  neededScope: "messages:create",
  allowXApiKey: true,
  parse(body) {
    const parsed = anthropicMessagesRequestSchema.safeParse(body);
    if (!parsed.success) throw anthropicParseError(parsed.error.issues);
    try {
      return fromAnthropicRequest(parsed.data);
    } catch (error) {
      const message = error instanceof Error ? error.message : "the request cannot be translated";
      throw new RouterError(400, "INVALID_REQUEST", message, {
        failureType: "validation_error",
        stage: "parse",
        shouldRetry: false,
      });
    }
  },
  responseId: (requestId) => `msg_${requestId.slice(4)}`,
  // The Anthropic SDKs expose it as `_request_id` (Python, TypeScript).
  headers: (requestId) => ({ "request-id": requestId }),
  respond: (result, meta) => toAnthropicResponse(result, meta),
  encoder: (meta, _includeUsage, promptTokens) =>
    new AnthropicStreamEncoder(meta, { inputTokens: promptTokens }),
  errorBody: (error) =>
    anthropicErrorBody({
      message: error.message,
      type: error.type,
      code: error.code,
      status: error.status,
      param: error.param,
    }),
};
