/**
 * Provider adapters (Ollama, OpenAI, Anthropic), format translation, and the client-side encoders for
 * the OpenAI and Anthropic wire formats.
 */
export * from "./types.ts";
export { type Deadline, deadlineAfter } from "./deadlines.ts";
export { Http1Agent, routedUpstreamFetch, type UpstreamFetch } from "./http1_client.ts";
export { OllamaAdapter } from "./ollama.ts";
export { OpenAIAdapter } from "./openai.ts";
export { AnthropicAdapter } from "./anthropic.ts";
export { OpenAIStreamEncoder, toOpenAIResponse } from "./openai_format.ts";
export {
  anthropicErrorBody,
  type AnthropicMessagesRequest,
  anthropicMessagesRequestSchema,
  anthropicNative,
  AnthropicStreamEncoder,
  fromAnthropicRequest,
  toAnthropicResponse,
} from "./anthropic_inbound.ts";
