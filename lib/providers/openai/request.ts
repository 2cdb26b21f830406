/** Canonical request → OpenAI's `POST /chat/completions` body: the canonical request already is OpenAI's shape. */
import type { ChatRequest } from "../../canonical/mod.ts";

/** Builds the `/chat/completions` body for a canonical request. */
export function toOpenAIRequest(
  request: ChatRequest,
  options: { model: string; stream: boolean },
): Record<string, unknown> {
  const body: Record<string, unknown> = { ...request, model: options.model, stream: options.stream };
  // OpenAI rejects stream_options on a non-streamed call; on a streamed one we always want usage.
  if (options.stream) body.stream_options = { include_usage: true };
  else delete body.stream_options;
  // Anthropic's `thinking` is not an OpenAI field (OpenAI would refuse it); docs/protocols.md says its fate.
  delete body.thinking;
  return body;
}
