import {
  admit,
  type ChatDeps,
  type Dialect,
  errorResponse,
  Exchange,
  fail,
  Pipeline,
  relayJson,
  relayStream,
  requireRecordable,
  route,
  RouterError,
} from "../pipeline/mod.ts";

export type { ChatDeps } from "../pipeline/mod.ts";

/**
 * Runs `POST /v1/chat/completions` and `POST /v1/messages` through the pipeline (lib/pipeline):
 * admit → route (decide) → attempts → relay (JSON or stream) → record.
 */
export class ChatHandler {
  #pipeline: Pipeline;

  constructor(deps: ChatDeps) {
    this.#pipeline = new Pipeline(deps);
  }

  /** Handles one request; never throws (the last-resort path still answers and records). */
  async handle(request: Request, dialect: Dialect): Promise<Response> {
    const pipeline = this.#pipeline;
    const exchange = new Exchange(dialect.endpoint, pipeline.now());
    pipeline.inFlight.count++;
    exchange.inFlight = true;
    try {
      await admit(pipeline, request, dialect, exchange);
      const candidates = route(pipeline, exchange);
      exchange.stage = "execute";
      // Checked again here: admission may have waited (a lease write), and no provider is called unless
      // the record can be written.
      requireRecordable(pipeline, exchange);
      return exchange.stream
        ? await relayStream(pipeline, request, dialect, exchange, candidates)
        : await relayJson(pipeline, request, dialect, exchange, candidates);
    } catch (error) {
      if (error instanceof RouterError) return await fail(pipeline, exchange, dialect, error);
      const name = error instanceof Error ? error.name : typeof error;
      pipeline.deps.log(`uncaught ${name} at stage ${exchange.stage} request_id=${exchange.requestId}`);
      const failure = new RouterError(
        500,
        "INTERNAL_ERROR",
        `internal error at stage ${exchange.stage}; retry, and report the request id if it persists`,
        {
          failureType: "uncaught_exception",
          stage: exchange.stage,
        },
      );
      if (exchange.committed) {
        // The record is already written; the client still gets a clean error.
        return errorResponse(pipeline, exchange, dialect, failure);
      }
      return await fail(pipeline, exchange, dialect, failure);
    }
  }
}
