/**
 * Provider adapters: each of `ollama/`, `openai/` and `anthropic/` turns a canonical request
 * (lib/canonical) into its upstream's body and the upstream's answer back into canonical results and
 * events. Shared once here: the event-stream loop, the upstream call and its deadlines, the HTTP-error
 * mapping, SSE/NDJSON framing. Nothing here knows what a client speaks (lib/inbound).
 */
export * from "./types.ts";
export { type Deadline, deadlineAfter } from "./deadlines.ts";
export { Http1Agent, routedUpstreamFetch, type UpstreamFetch } from "./http1_client.ts";
export { OllamaAdapter } from "./ollama/mod.ts";
export { OpenAIAdapter } from "./openai/mod.ts";
export { AnthropicAdapter } from "./anthropic/mod.ts";
