/**
 * The relay of a JSON answer: the first candidate that answers whole is the answer; its record is made
 * durable before the client gets a byte of it.
 * @module
 */
import type { Candidate } from "../contract/mod.ts";
import type { Dialect } from "./dialects.ts";
import type { ChatResult } from "../canonical/mod.ts";
import type { Attempt } from "./attempt.ts";
import { type AttemptCall, tryCandidates } from "./candidates.ts";
import { answerHeaders, answerMeta, durable, JSON_HEADERS, observe } from "./commit.ts";
import type { Pipeline } from "./context.ts";
import type { Exchange } from "./exchange.ts";

/** A complete (non-streamed) call; the attempt is released as soon as it returns. */
const COMPLETE: AttemptCall<ChatResult> = {
  holdsAttempt: false,
  call: (attempt: Attempt) => attempt.adapter.complete(attempt.chat, attempt.options),
};

export async function relayJson(
  pipeline: Pipeline,
  request: Request,
  dialect: Dialect,
  exchange: Exchange,
  candidates: Candidate[],
): Promise<Response> {
  const result = await tryCandidates(pipeline, exchange, request.signal, candidates, COMPLETE);
  exchange.output = {
    content: result.content,
    tool_calls: result.tool_calls,
    finish_reason: result.finish_reason,
  };
  exchange.usage = result.usage;
  exchange.stage = "respond";
  await durable(pipeline, exchange);
  observe(pipeline, exchange, 200);
  const body = dialect.respond(result, answerMeta(exchange, dialect, result.model));
  return new Response(JSON.stringify(body), {
    status: 200,
    headers: answerHeaders(exchange, dialect, JSON_HEADERS),
  });
}
