/** Newline-delimited JSON framing (Ollama's streaming format). */

/** A `TransformStream` from decoded text to parsed JSON values, one per non-empty line. */
export class NdjsonParserStream extends TransformStream<string, unknown> {
  /** Builds the parser; feed it text from a `TextDecoderStream`. */
  constructor() {
    let buffer = "";
    const emitLine = (line: string, controller: TransformStreamDefaultController<unknown>) => {
      const trimmed = line.trim();
      if (trimmed === "") return;
      controller.enqueue(JSON.parse(trimmed));
    };
    super({
      transform(chunk, controller) {
        buffer += chunk;
        let newline = buffer.indexOf("\n");
        while (newline !== -1) {
          emitLine(buffer.slice(0, newline), controller);
          buffer = buffer.slice(newline + 1);
          newline = buffer.indexOf("\n");
        }
      },
      flush(controller) {
        // A final line without its newline is still a whole object when the body ended cleanly.
        emitLine(buffer, controller);
        buffer = "";
      },
    });
  }
}

/** Parses an NDJSON body into its values; a line that is not JSON errors the stream with a SyntaxError. */
export function parseNdjson(body: ReadableStream<Uint8Array>): ReadableStream<unknown> {
  return body.pipeThrough(new TextDecoderStream()).pipeThrough(new NdjsonParserStream());
}
