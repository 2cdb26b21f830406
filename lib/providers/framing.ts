/**
 * Turns a byte body into parsed items with one stream stage. Chaining `TextDecoderStream` and a parser
 * `TransformStream` costs two pipes of promise hops per chunk; on a streamed answer of many small
 * events that overhead dominated the router's CPU, so the adapters decode and frame in a single pull.
 */

/** A text parser fed decoded chunks in order; it emits each complete item as soon as it has one. */
export interface TextFramer<T> {
  push(text: string, emit: (item: T) => void): void;
  /** Called once when the body ended cleanly, for a last unterminated item. */
  end(emit: (item: T) => void): void;
}

/** Options for `framedStream`. */
export interface FramedStreamOptions {
  /** Called for each item as it is framed (the upstream deadlines watch the gaps between them). */
  onItem?: () => void;
}

/** Reads `body`, decodes UTF-8 across chunk boundaries, and yields what `framer` emits. */
export function framedStream<T>(
  body: ReadableStream<Uint8Array>,
  framer: TextFramer<T>,
  options: FramedStreamOptions = {},
): ReadableStream<T> {
  const onItem = options.onItem;
  const reader = body.getReader();
  const decoder = new TextDecoder();
  return new ReadableStream<T>({
    async pull(controller) {
      let produced = false;
      const emit = (item: T) => {
        controller.enqueue(item);
        produced = true;
        onItem?.();
      };
      // Keep reading until this pull produced something, so a consumer's read never stalls on a
      // chunk that held only part of an item.
      while (!produced) {
        const { done, value } = await reader.read();
        if (done) {
          const tail = decoder.decode();
          if (tail !== "") framer.push(tail, emit);
          framer.end(emit);
          controller.close();
          return;
        }
        framer.push(decoder.decode(value, { stream: true }), emit);
      }
    },
    cancel(reason) {
      return reader.cancel(reason);
    },
  });
}
