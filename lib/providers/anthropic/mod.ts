/** The Anthropic provider (Messages API): adapter, request and answer translation, its wire types. */
export { ANTHROPIC_VERSION, AnthropicAdapter, type AnthropicAdapterOptions } from "./adapter.ts";
export {
  type AnthropicJsonMode,
  anthropicJsonMode,
  checkAnthropicSupport,
  FIRST_TURN_USER_TEXT,
  toAnthropicRequest,
} from "./request.ts";
export { type AnthropicResponseMessage, fromAnthropicResponse, fromAnthropicStopReason } from "./response.ts";
export { anthropicEventDecoder, anthropicStreamError } from "./stream.ts";
export type { AnthropicMessagesBody } from "./wire.ts";
