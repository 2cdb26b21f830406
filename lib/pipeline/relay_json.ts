/**
 * The relay of a JSON answer: the first candidate that answers whole is the answer; its record is made
 * durable before the client gets a byte of it.
 * @module
 */
import type { Candidate } from "../contract/mod.ts";
import type { Dialect } from "./dialects.ts";
import { decisionHeaders } from "./reasons.ts";
import type { ChatResult } from "../canonical/mod.ts";
import type { Attempt } from "./attempt.ts";
import { type AttemptCall, tryCandidates } from "./candidates.ts";
import { durable, JSON_HEADERS, observe } from "./commit.ts";
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
  const meta = {
    id: dialect.responseId(exchange.requestId),
    created: Math.floor(exchange.receivedAtMs / 1000),
    model: result.model,
  };
  observe(pipeline, exchange, 200);
  return new Response(JSON.stringify(dialect.respond(result, meta)), {
    status: 200,
    headers: {
      ...JSON_HEADERS,
      "x-request-id": exchange.requestId,
      ...dialect.headers(exchange.requestId),
      ...decisionHeaders(exchange),
    },
  });
}
