/**
 * Server-sent events framing of an upstream's answer: assembles events from arbitrarily split bytes (inside
 * a line, inside a multi-byte character, between `data:` and its blank line).
 */

import { framedStream, type FramedStreamOptions, type TextFramer } from "./framing.ts";

/** One assembled SSE event: its `event:` name (null when none was given) and its joined `data:` lines. */
export interface SseEvent {
  event: string | null;
  data: string;
}

/** Splits decoded text into lines ending in CRLF, LF or CR, buffering the unfinished last line. */
class LineSplitter {
  #buffer = "";
  // A chunk may end between CR and LF; remember the CR so the LF that follows is not a second line.
  #pendingCr = false;

  push(text: string, emit: (line: string) => void): void {
    let start = 0;
    if (this.#pendingCr && text.startsWith("\n")) start = 1;
    this.#pendingCr = false;
    for (let i = start; i < text.length; i++) {
      const ch = text.charCodeAt(i);
      if (ch !== 10 && ch !== 13) continue;
      emit(this.#buffer + text.slice(start, i));
      this.#buffer = "";
      if (ch === 13) {
        if (i + 1 < text.length) {
          if (text.charCodeAt(i + 1) === 10) i++;
        } else {
          this.#pendingCr = true;
        }
      }
      start = i + 1;
    }
    this.#buffer += text.slice(start);
  }

  /** The unterminated last line, if any. */
  rest(): string {
    const rest = this.#buffer;
    this.#buffer = "";
    return rest;
  }
}

/** Assembles SSE events from decoded text, following the WHATWG event-stream rules. */
export class SseFramer implements TextFramer<SseEvent> {
  #lines = new LineSplitter();
  #data: string[] = [];
  #hasData = false;
  #event: string | null = null;

  push(text: string, emit: (event: SseEvent) => void): void {
    this.#lines.push(text, (line) => this.#onLine(line, emit));
  }

  end(emit: (event: SseEvent) => void): void {
    // An event not ended by a blank line is incomplete (the spec discards it); a stream cut is
    // detected by the caller from the missing terminal event.
    const rest = this.#lines.rest();
    if (rest !== "") this.#onLine(rest, emit);
  }

  #onLine(line: string, emit: (event: SseEvent) => void): void {
    if (line === "") {
      if (this.#hasData) emit({ event: this.#event, data: this.#data.join("\n") });
      this.#data = [];
      this.#hasData = false;
      this.#event = null;
      return;
    }
    if (line.startsWith(":")) return;
    const colon = line.indexOf(":");
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? "" : line.slice(colon + 1);
    if (value.startsWith(" ")) value = value.slice(1);
    if (field === "data") {
      this.#data.push(value);
      this.#hasData = true;
    } else if (field === "event") {
      this.#event = value;
    }
    // `id` and `retry` steer browser reconnection, which a router never does.
  }
}

/** Parses an SSE response body into events (`options.onItem` is called as each one is framed). */
export function parseSse(
  body: ReadableStream<Uint8Array>,
  options: FramedStreamOptions = {},
): ReadableStream<SseEvent> {
  return framedStream(body, new SseFramer(), options);
}
