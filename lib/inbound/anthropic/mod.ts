/**
 * The Anthropic Messages dialect (`POST /v1/messages`) as clients speak it: the request schema, its
 * translation into the canonical request, the `message` body, the SSE stream and the error body.
 */
export {
  ANTHROPIC_REFUSED_FIELDS,
  type AnthropicMessagesRequest,
  anthropicMessagesRequestSchema,
  MAX_ANTHROPIC_NAME_CHARS,
  MAX_STOP_SEQUENCES,
} from "./schema.ts";
export { fromAnthropicRequest, parseAnthropicRequest } from "./to_canonical.ts";
export {
  type AnthropicStopReason,
  toAnthropicResponse,
  toAnthropicStop,
  toAnthropicStopReason,
  toAnthropicUsage,
} from "./response.ts";
export { AnthropicStreamEncoder, type AnthropicStreamEncoderOptions } from "./stream.ts";
export { anthropicErrorBody, anthropicErrorType } from "./errors.ts";
