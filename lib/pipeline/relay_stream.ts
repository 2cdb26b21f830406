/**
 * The relay of a streamed answer. The client is answered only once a candidate's first event arrived, so a
 * failure before it can still fall back; from then on the relay owns the serving attempt and releases it
 * when the stream ends, whichever way (finished, cut upstream, client gone). The finish event waits for the
 * record to be durable.
 * @module
 */
import { concatBytes } from "../bytes.ts";
import type { Candidate } from "../contract/mod.ts";
import type { Dialect } from "./dialects.ts";
import { RouterError } from "./errors.ts";
import type { StreamEvent } from "../canonical/mod.ts";
import type { ClientStreamEncoder } from "../inbound/mod.ts";
import { UpstreamError } from "../providers/mod.ts";
import type { Attempt } from "./attempt.ts";
import { type AttemptCall, tryCandidates } from "./candidates.ts";
import {
  answerHeaders,
  answerMeta,
  commitQuietly,
  durable,
  edrFailure,
  errorInfo,
  observe,
} from "./commit.ts";
import type { Pipeline } from "./context.ts";
import { type Exchange, round } from "./exchange.ts";
import { NOT_READY, NOT_READY_MARK, OutputAssembler } from "./stream_output.ts";

const SSE_HEADERS = {
  "content-type": "text/event-stream",
  "cache-control": "no-cache",
  "connection": "keep-alive",
};

const STREAM_DISCONNECT = {
  message: "the client disconnected before the stream ended",
  stage: "stream",
  type: "client_disconnect",
} as const;

type Read = ReadableStreamReadResult<StreamEvent>;

export async function relayStream(
  pipeline: Pipeline,
  request: Request,
  dialect: Dialect,
  exchange: Exchange,
  candidates: Candidate[],
): Promise<Response> {
  const relay = new StreamRelay(pipeline, exchange, request.signal);
  await tryCandidates(pipeline, exchange, request.signal, candidates, relay);
  exchange.stage = "stream";
  try {
    relay.begin(
      dialect.encoder(
        answerMeta(exchange, dialect, relay.model),
        exchange.chat!.stream_options?.include_usage === true,
        exchange.features?.estimated_prompt_tokens ?? 0,
      ),
    );
    return new Response(new ReadableStream<Uint8Array>(relay), {
      status: 200,
      // Sent with the first byte: the decision headers name the candidate that is answering.
      headers: answerHeaders(exchange, dialect, SSE_HEADERS),
    });
  } catch (error) {
    // No stream reached the client: the serving attempt is given back before the error is answered.
    relay.abandon();
    throw error;
  }
}

/**
 * Starts each candidate's stream up to its first event (`call`), then is the client stream's source
 * (`pull`, `cancel`) and the listener for the client leaving (`handleEvent`).
 */
class StreamRelay implements AttemptCall<void>, UnderlyingDefaultSource<Uint8Array>, EventListenerObject {
  readonly holdsAttempt = true;
  model = "";
  readonly #pipeline: Pipeline;
  readonly #exchange: Exchange;
  readonly #clientSignal: AbortSignal;
  readonly #assembler = new OutputAssembler();
  #attempt: Attempt | null = null;
  #reader: ReadableStreamDefaultReader<StreamEvent> | null = null;
  #pendingRead: Promise<Read> | null = null;
  #encoder: ClientStreamEncoder | null = null;
  #opening: Uint8Array | null = null;
  #finished = false;
  #finishBytes: Uint8Array | null = null;

  constructor(pipeline: Pipeline, exchange: Exchange, clientSignal: AbortSignal) {
    this.#pipeline = pipeline;
    this.#exchange = exchange;
    this.#clientSignal = clientSignal;
  }

  /** Opens the attempt's stream and waits for its first event; a failure up to then may still fall back. */
  async call(attempt: Attempt): Promise<void> {
    const stream = await attempt.adapter.stream(attempt.chat, attempt.options);
    const reader = stream.getReader();
    let first: Read;
    try {
      first = await reader.read();
    } catch (error) {
      reader.releaseLock();
      await stream.cancel().catch(() => {});
      throw error instanceof UpstreamError ? asFallbackWorthy(error) : error;
    }
    this.#attempt = attempt;
    this.#reader = reader;
    this.#pendingRead = Promise.resolve(first);
    this.model = attempt.options.model;
  }

  /** The client is about to be answered: from here the relay watches for it leaving. */
  begin(encoder: ClientStreamEncoder): void {
    this.#encoder = encoder;
    this.#opening = encoder.start();
    // The attempt's duration so far ran to its first event; the streaming time is added when it ends.
    this.#attempt!.streaming();
    this.#clientSignal.addEventListener("abort", this, { once: true });
  }

  /** The client will not be answered from this stream (the answer failed before it was made). */
  abandon(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#attempt?.release();
    this.#clientSignal.removeEventListener("abort", this);
    this.#reader?.cancel().catch(() => {});
  }

  /** The client went away. */
  handleEvent(): void {
    if (this.#finished) return;
    this.#exchange.failure ??= { ...STREAM_DISCONNECT };
    this.#attempt!.abortedMidStream();
    this.#reader!.cancel().catch(() => {});
  }

  async pull(controller: ReadableStreamDefaultController<Uint8Array>): Promise<void> {
    const exchange = this.#exchange;
    const encoder = this.#encoder!;
    const reader = this.#reader!;
    // Everything already queued upstream goes out in one write: one chunk per event would cost a
    // syscall and a stream round trip each.
    const parts: Uint8Array[] = [];
    if (this.#opening) {
      parts.push(this.#opening);
      this.#opening = null;
    }
    try {
      let next = await this.#pendingRead!;
      let event: StreamEvent;
      while (true) {
        if (next.done) {
          throw new UpstreamError("the upstream stream ended without a finish event", {
            status: 502,
            code: "UPSTREAM_STREAM_CUT",
            type: "server_error",
            fallback: false,
          });
        }
        event = next.value;
        this.#assembler.add(event);
        const bytes = encoder.encode(event);
        if (event.type === "finish") {
          // Held back: the finish chunk goes out after the record (see #end).
          this.#finishBytes = bytes;
          break;
        }
        parts.push(bytes);
        const read = reader.read();
        const ready = await Promise.race([read, NOT_READY]);
        if (ready === NOT_READY_MARK) {
          this.#pendingRead = read;
          break;
        }
        next = ready as Read;
      }
      if (exchange.firstByteMs === null) {
        exchange.firstByteMs = round(performance.now() - exchange.startedAt);
      }
      if (event.type !== "finish") {
        this.#flush(parts, controller);
        return;
      }
      await this.#end(event, encoder, parts, controller);
    } catch (error) {
      if (this.#finished) throw error;
      await this.#cut(error, encoder, parts, controller);
    }
  }

  /**
   * The upstream finished: the attempt is released and the record made durable; only then do the finish
   * chunk and the end go out. A client that stops reading at finish_reason must never hold an answer
   * whose EDR was not made durable.
   */
  async #end(
    event: Extract<StreamEvent, { type: "finish" }>,
    encoder: ClientStreamEncoder,
    parts: Uint8Array[],
    controller: ReadableStreamDefaultController<Uint8Array>,
  ): Promise<void> {
    const exchange = this.#exchange;
    exchange.output = this.#assembler.output(event.finish_reason);
    exchange.usage = event.usage;
    this.#finish();
    this.#reader!.releaseLock();
    try {
      await durable(this.#pipeline, exchange);
    } catch (error) {
      const failure = error instanceof RouterError ? error : edrFailure();
      parts.push(encoder.error(errorInfo(failure)));
      observe(this.#pipeline, exchange, failure.status);
      this.#flush(parts, controller);
      controller.close();
      return;
    }
    observe(this.#pipeline, exchange, 200);
    parts.push(this.#finishBytes!, encoder.done());
    this.#flush(parts, controller);
    controller.close();
  }

  /** The stream failed before its finish event (upstream cut, or the client left): record, then close. */
  async #cut(
    error: unknown,
    encoder: ClientStreamEncoder,
    parts: Uint8Array[],
    controller: ReadableStreamDefaultController<Uint8Array>,
  ): Promise<void> {
    const exchange = this.#exchange;
    this.#flush(parts, controller);
    this.#finish();
    this.#reader!.cancel().catch(() => {});
    if (this.#clientSignal.aborted || exchange.failure?.type === "client_disconnect") {
      await this.#recordDisconnect();
      controller.close();
      return;
    }
    const upstream = error instanceof UpstreamError ? error : null;
    const failure = new RouterError(
      upstream?.status ?? 502,
      upstream?.code ?? "UPSTREAM_STREAM_CUT",
      upstream
        ? `the upstream failed mid-stream (${upstream.code}); retry the request`
        : "the stream failed; retry the request",
      {
        failureType: upstream?.code === "UPSTREAM_STREAM_CUT" ? "upstream_stream_cut" : "provider_error",
        stage: "stream",
      },
    );
    this.#attempt!.failedMidStream(failure.code);
    exchange.fail(failure);
    exchange.output = null;
    await commitQuietly(this.#pipeline, exchange, failure.status);
    controller.enqueue(encoder.error(errorInfo(failure)));
    controller.close();
  }

  async cancel(): Promise<void> {
    this.handleEvent();
    if (!this.#finished) this.#finish();
    if (!this.#exchange.committed) await this.#recordDisconnect();
  }

  /** Sends what `parts` holds as one chunk; after the client went away the stream is closed and it is dropped. */
  #flush(parts: Uint8Array[], controller: ReadableStreamDefaultController<Uint8Array>): void {
    if (parts.length && !this.#clientSignal.aborted) controller.enqueue(concatBytes(parts));
    parts.length = 0;
  }

  /** The stream is over: the serving attempt gives back its slot, trial, listener and controller. */
  #finish(): void {
    this.#finished = true;
    const attempt = this.#attempt!;
    attempt.release();
    this.#clientSignal.removeEventListener("abort", this);
    attempt.streamEnded();
  }

  async #recordDisconnect(): Promise<void> {
    this.#exchange.failure ??= { ...STREAM_DISCONNECT };
    await commitQuietly(this.#pipeline, this.#exchange, 499);
  }
}

/** A failure before any byte reached the client may still fall back, whatever the adapter assumed. */
function asFallbackWorthy(error: UpstreamError): UpstreamError {
  if (error.fallback || error.code === "CLIENT_ABORTED") return error;
  return new UpstreamError(error.message, {
    status: error.status,
    code: error.code,
    type: error.type,
    fallback: error.status >= 500 || error.status === 429,
    upstreamStatus: error.upstreamStatus,
    retryAfter: error.retryAfter,
    param: error.param,
  });
}
