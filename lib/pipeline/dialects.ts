import type { ChatRequest, ChatResult } from "../canonical/mod.ts";
import { InboundError } from "../inbound/mod.ts";
import type { ClientResponseMeta, ClientStreamEncoder } from "../inbound/mod.ts";
import {
  anthropicErrorBody,
  AnthropicStreamEncoder,
  parseAnthropicRequest,
  toAnthropicResponse,
} from "../inbound/anthropic/mod.ts";
import { OpenAIStreamEncoder, parseOpenAIRequest, toOpenAIResponse } from "../inbound/openai/mod.ts";
import type { NeededScope } from "../authority/mod.ts";
import { openAIErrorBody, RouterError } from "./errors.ts";
import type { Endpoint } from "./exchange.ts";

/**
 * One inbound API the router serves: its endpoint and scope, and the dialect (lib/inbound) that reads its
 * requests and writes its answers and errors.
 */
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

/** A request the dialect refused becomes the pipeline's error: a validation failure at parse, not worth retrying. */
function parsedBy(parse: (body: Record<string, unknown>) => ChatRequest) {
  return (body: Record<string, unknown>): ChatRequest => {
    try {
      return parse(body);
    } catch (error) {
      if (!(error instanceof InboundError)) throw error;
      throw new RouterError(error.status, error.code, error.message, {
        param: error.param,
        recordedMessage: error.recordedMessage,
        failureType: "validation_error",
        stage: "parse",
        shouldRetry: false,
      });
    }
  };
}

/** OpenAI chat completions (`POST /v1/chat/completions`). */
export const openAIDialect: Dialect = {
  endpoint: "/v1/chat/completions",
  neededScope: "chat:completions",
  allowXApiKey: false,
  parse: parsedBy(parseOpenAIRequest),
  responseId: (requestId) => `chatcmpl-${requestId.slice(4)}`,
  headers: () => ({}),
  respond: (result, meta) => toOpenAIResponse(result, meta),
  encoder: (meta, includeUsage) => new OpenAIStreamEncoder(meta, { includeUsage }),
  errorBody: (error) => openAIErrorBody(error),
};

/** Anthropic Messages (`POST /v1/messages`), answered in Anthropic's format whoever served. */
export const anthropicDialect: Dialect = {
  endpoint: "/v1/messages",
  neededScope: "messages:create",
  allowXApiKey: true,
  parse: parsedBy(parseAnthropicRequest),
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
