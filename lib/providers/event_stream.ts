/**
 * The one loop over a streamed upstream answer. Each provider frames its body (SSE or NDJSON) and decodes
 * each framed item into canonical events; the loop reads, stamps the call's deadlines as items arrive
 * (through the framer's `onItem`), maps read failures, ends on the decoder's terminal item, and treats an
 * end without one as a cut. A stream always ends with exactly one `finish` event or an `UpstreamError`.
 */
import type { StreamEvent } from "../canonical/mod.ts";
import type { FramedStreamOptions } from "./framing.ts";
import { streamCutError, upstreamFailure } from "./http_errors.ts";
import { drain, type UpstreamCall } from "./upstream_call.ts";
import { type ProviderName, UpstreamError } from "./types.ts";

/** What the stream does after one item: read on, or end (the decoder emitted the `finish` event). */
export type DecodeStep = "more" | "done";

/**
 * Decodes one framed upstream item into canonical events (`emit`), keeping whatever state the provider's
 * protocol needs between items. Throws an `UpstreamError` to end the stream with it.
 */
export type EventDecoder<T> = (item: T, emit: (event: StreamEvent) => void) => DecodeStep;

/** Options for `decodeEventStream`. */
export interface DecodeEventStreamOptions {
  /** Which provider answers (for the cut error). */
  provider: ProviderName;
  /** Maps a failure while reading the items (abort, timeout, reset, bad framing); `UpstreamError`s pass as they are. */
  mapReadError?: (error: unknown) => UpstreamError;
}

/** Decodes framed upstream items into canonical events with `decode`. */
export function decodeEventStream<T>(
  items: ReadableStream<T>,
  decode: EventDecoder<T>,
  options: DecodeEventStreamOptions,
): ReadableStream<StreamEvent> {
  const reader = items.getReader();
  const readError = (error: unknown): UpstreamError =>
    error instanceof UpstreamError
      ? error
      : options.mapReadError?.(error) ?? streamCutError(options.provider);
  return new ReadableStream<StreamEvent>({
    async pull(controller) {
      let produced = false;
      const emit = (event: StreamEvent) => {
        controller.enqueue(event);
        produced = true;
      };
      // Keep reading until this pull produced something, so a consumer is never left waiting.
      while (!produced) {
        let next: ReadableStreamReadResult<T>;
        try {
          next = await reader.read();
        } catch (error) {
          controller.error(readError(error));
          return;
        }
        if (next.done) {
          controller.error(streamCutError(options.provider));
          return;
        }
        let step: DecodeStep;
        try {
          step = decode(next.value, emit);
        } catch (error) {
          controller.error(error);
          await reader.cancel().catch(() => {});
          return;
        }
        if (step === "done") {
          controller.close();
          // Read to the end so the connection is released, not reset.
          await drain(reader);
          return;
        }
      }
    },
    async cancel(reason) {
      await reader.cancel(reason).catch(() => {});
    },
  });
}

/** Frames a body into items (`parseSse`, `parseNdjson`), calling `onItem` as each one is framed. */
export type Framer<T> = (body: ReadableStream<Uint8Array>, options: FramedStreamOptions) => ReadableStream<T>;

/**
 * The canonical event stream of a started call: its body framed by `frame`, each item stamping the call's
 * first-byte and idle deadlines, decoded by `decode`; read failures mapped for a stream that began.
 */
export function upstreamEventStream<T>(
  call: UpstreamCall,
  frame: Framer<T>,
  decode: EventDecoder<T>,
  options: { provider: ProviderName; signal: AbortSignal },
): ReadableStream<StreamEvent> {
  const body = call.response.body;
  if (body === null) throw streamCutError(options.provider);
  return decodeEventStream(frame(body, { onItem: call.onEvent }), decode, {
    provider: options.provider,
    mapReadError: (error) =>
      upstreamFailure(options.provider, error, {
        signal: options.signal,
        stage: "stream",
        callSignal: call.signal,
      }),
  });
}
