/** Newline-delimited JSON framing (Ollama's streaming format). */
import { framedStream, type FramedStreamOptions, type TextFramer } from "./framing.ts";

/** Splits decoded text into lines and parses each non-empty one as JSON (a bad line throws SyntaxError). */
export class NdjsonFramer implements TextFramer<unknown> {
  #buffer = "";

  push(text: string, emit: (value: unknown) => void): void {
    this.#buffer += text;
    let newline = this.#buffer.indexOf("\n");
    while (newline !== -1) {
      emitLine(this.#buffer.slice(0, newline), emit);
      this.#buffer = this.#buffer.slice(newline + 1);
      newline = this.#buffer.indexOf("\n");
    }
  }

  end(emit: (value: unknown) => void): void {
    // A final line without its newline is still a whole object when the body ended cleanly.
    emitLine(this.#buffer, emit);
    this.#buffer = "";
  }
}

function emitLine(line: string, emit: (value: unknown) => void): void {
  const trimmed = line.trim();
  if (trimmed !== "") emit(JSON.parse(trimmed));
}

/**
 * Parses an NDJSON body into its values (`options.onItem` is called as each is framed); a line that is not
 * JSON errors the stream with a SyntaxError.
 */
export function parseNdjson(
  body: ReadableStream<Uint8Array>,
  options: FramedStreamOptions = {},
): ReadableStream<unknown> {
  return framedStream(body, new NdjsonFramer(), options);
}
