/**
 * What the two inbound dialects share: the answer's identity, the client-side error, the stream encoder
 * the HTTP layer drives, and `InboundError`. Each dialect has its own door: `openai/mod.ts`,
 * `anthropic/mod.ts`.
 */
export {
  type ClientErrorInfo,
  type ClientResponseMeta,
  type ClientStreamEncoder,
  InboundError,
  type InboundErrorOptions,
} from "./types.ts";
