/** The local provider (Ollama `/api/chat`): adapter, request and answer translation. */
export { OllamaAdapter, type OllamaAdapterOptions } from "./adapter.ts";
export {
  checkOllamaSupport,
  type OllamaMessage,
  thinkFor,
  toOllamaMessages,
  toOllamaRequest,
} from "./request.ts";
export { fromOllamaAnswer, mintToolCallId, type OllamaChunk, ollamaChunkDecoder } from "./response.ts";
export { type ForcedTool, forcedTool } from "./forced_tool.ts";
