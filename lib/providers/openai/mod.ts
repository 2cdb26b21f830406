/** The OpenAI provider (chat completions): adapter, request and answer translation. */
export { OpenAIAdapter, type OpenAIAdapterOptions } from "./adapter.ts";
export { toOpenAIRequest } from "./request.ts";
export { fromOpenAIAnswer, type OpenAIBody, openAIEventDecoder } from "./response.ts";
