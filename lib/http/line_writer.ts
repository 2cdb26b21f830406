/**
 * Lines to a file descriptor (stdout) without making the request path wait on it: `write` queues the line
 * and returns; one write at a time drains everything queued since, so under load many lines go out in one
 * write. A console that stops reading cannot grow the queue without bound: past `maxQueuedBytes` lines are
 * dropped and counted, and the next line that fits says how many were lost.
 */

/** Where the lines go: `Deno.stdout` or a stand-in. */
export interface LineTarget {
  write(bytes: Uint8Array): Promise<number>;
}

const encoder = new TextEncoder();

export class BufferedLineWriter {
  #target: LineTarget;
  #maxQueuedBytes: number;
  #queue: string[] = [];
  #queuedBytes = 0;
  #dropped = 0;
  #draining: Promise<void> | null = null;

  constructor(target: LineTarget, options: { maxQueuedBytes?: number } = {}) {
    this.#target = target;
    this.#maxQueuedBytes = options.maxQueuedBytes ?? 4 * 1024 * 1024;
  }

  /** Queues one line (without its newline); never waits and never throws. */
  write(line: string): void {
    // String length bounds the UTF-8 size within a factor of 3; exactness is not needed for a cap.
    if (this.#queuedBytes + line.length > this.#maxQueuedBytes) {
      this.#dropped++;
      return;
    }
    if (this.#dropped > 0) {
      const notice = `{"level":"warn","msg":"log lines dropped","dropped":${this.#dropped}}`;
      this.#dropped = 0;
      this.#queue.push(notice);
      this.#queuedBytes += notice.length;
    }
    this.#queue.push(line);
    this.#queuedBytes += line.length;
    this.#draining ??= this.#drain();
  }

  /** Resolves once every queued line was written (or the target failed). */
  async flush(): Promise<void> {
    while (this.#draining) await this.#draining;
  }

  async #drain(): Promise<void> {
    // Start after the current task, so lines queued by the same burst of work go out together.
    await Promise.resolve();
    try {
      while (this.#queue.length > 0) {
        const bytes = encoder.encode(this.#queue.join("\n") + "\n");
        this.#queue = [];
        this.#queuedBytes = 0;
        let written = 0;
        while (written < bytes.length) written += await this.#target.write(bytes.subarray(written));
      }
    } catch {
      // A closed stdout (the reader went away) loses the log, never the request.
      this.#queue = [];
      this.#queuedBytes = 0;
    } finally {
      this.#draining = null;
    }
  }
}
