/** Builds one UTF-8 buffer from many strings and says where each landed. */

const encoder = new TextEncoder();

/**
 * Appends strings as UTF-8 and returns each one's byte range. The EDR writer encodes a WAL batch with
 * it and keeps the ranges: the per-request files are later cut from the same bytes, so no record text
 * stays on the JS heap while it waits (long-lived strings were most of the writer's GC work).
 */
export class Utf8Builder {
  #bytes: Uint8Array<ArrayBuffer>;
  #length = 0;

  constructor(capacity = 64 * 1024) {
    this.#bytes = new Uint8Array(capacity);
  }

  /** Bytes written so far. */
  get length(): number {
    return this.#length;
  }

  /** Appends `text` and returns its `[start, end)` byte range. */
  append(text: string): [number, number] {
    // A UTF-16 code unit never needs more than 3 UTF-8 bytes.
    this.#reserve(text.length * 3);
    const start = this.#length;
    this.#length += encoder.encodeInto(text, this.#bytes.subarray(start)).written;
    return [start, this.#length];
  }

  /** A view of the bytes written so far (valid until the next append). */
  view(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }

  /** An exact-size copy of the bytes written so far, safe to keep or transfer. */
  finish(): Uint8Array<ArrayBuffer> {
    return this.#bytes.slice(0, this.#length);
  }

  #reserve(extra: number): void {
    if (this.#length + extra <= this.#bytes.length) return;
    const grown = new Uint8Array(Math.max(this.#bytes.length * 2, this.#length + extra));
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
  }
}
