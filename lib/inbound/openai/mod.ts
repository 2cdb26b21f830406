/**
 * The OpenAI chat-completions dialect (`POST /v1/chat/completions`) as clients speak it: the request
 * schema and its admission into the canonical request, the `chat.completion` body, the chunk stream and
 * the error body.
 */
export {
  chatRequestSchema,
  KNOWN_CHAT_FIELDS,
  MAX_CLIENT_NAME_CHARS,
  MAX_STOP_STRINGS,
  type ParsedChatRequest,
  REFUSED_FIELDS,
  withoutNullFields,
} from "./schema.ts";
export { admitChatFields, ECHOED_MEMBERS, parseChatBody, parseOpenAIRequest } from "./parse.ts";
export { type OpenAIChatCompletion, type OpenAIUsage, toOpenAIResponse, toOpenAIUsage } from "./response.ts";
export { OpenAIStreamEncoder, type OpenAIStreamEncoderOptions } from "./stream.ts";
export { openAIErrorBody, type OpenAIErrorInfo } from "./errors.ts";
