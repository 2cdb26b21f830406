/** Builds one UTF-8 buffer from many strings, reusing its memory from one use to the next. */

const encoder = new TextEncoder();
const INITIAL_CAPACITY = 64 * 1024;
/** A buffer that grew past this for one huge batch is not kept for the small ones that follow. */
const MAX_KEPT_CAPACITY = 4 * 1024 * 1024;

/**
 * Appends strings as UTF-8 into one growing buffer. The EDR writer encodes each WAL batch into the same
 * builder, so a batch costs one `encodeInto` per string and no allocation once the buffer is big enough.
 */
export class Utf8Builder {
  #bytes = new Uint8Array(INITIAL_CAPACITY);
  #length = 0;

  /** Empties the builder for the next use and returns it. */
  reset(): this {
    this.#length = 0;
    if (this.#bytes.length > MAX_KEPT_CAPACITY) this.#bytes = new Uint8Array(INITIAL_CAPACITY);
    return this;
  }

  /** Appends `text` as UTF-8. */
  append(text: string): void {
    // A UTF-16 code unit never needs more than 3 UTF-8 bytes.
    this.#reserve(text.length * 3);
    this.#length += encoder.encodeInto(text, this.#bytes.subarray(this.#length)).written;
  }

  /** A view of the bytes written so far (valid until the next append or reset). */
  view(): Uint8Array {
    return this.#bytes.subarray(0, this.#length);
  }

  #reserve(extra: number): void {
    if (this.#length + extra <= this.#bytes.length) return;
    const grown = new Uint8Array(Math.max(this.#bytes.length * 2, this.#length + extra));
    grown.set(this.#bytes.subarray(0, this.#length));
    this.#bytes = grown;
  }
}
