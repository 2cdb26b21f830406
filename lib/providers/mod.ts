/**
 * Provider adapters (Ollama, OpenAI, Anthropic): each turns a canonical request (lib/canonical) into its
 * upstream's body and the upstream's answer back into canonical results and events. Nothing here knows
 * what a client speaks (lib/inbound).
 */
export * from "./types.ts";
export { type Deadline, deadlineAfter } from "./deadlines.ts";
export { Http1Agent, routedUpstreamFetch, type UpstreamFetch } from "./http1_client.ts";
export { OllamaAdapter } from "./ollama.ts";
export { OpenAIAdapter } from "./openai.ts";
export { AnthropicAdapter } from "./anthropic.ts";
