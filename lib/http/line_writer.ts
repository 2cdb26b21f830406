/**
 * Lines to a file descriptor (stdout) without making the request path wait on it: `write` queues the line
 * and returns; the queue is written `batchMs` after its first line (or at `flush()`), one write at a time,
 * so under load one write carries the lines of many requests instead of each paying a system call. A
 * console that stops reading cannot grow the queue without bound: past `maxQueuedBytes` lines are dropped
 * and counted, and the next line that fits says how many were lost.
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
  #batchMs: number;
  #timer: ReturnType<typeof setTimeout> | null = null;

  constructor(target: LineTarget, options: { maxQueuedBytes?: number; batchMs?: number } = {}) {
    this.#target = target;
    this.#maxQueuedBytes = options.maxQueuedBytes ?? 4 * 1024 * 1024;
    this.#batchMs = options.batchMs ?? 10;
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
    // The first line of a batch starts its clock; lines that come while a batch is written wait for the
    // next one, so under load the writes stay one per `batchMs` instead of one per finished write.
    if (this.#draining === null && this.#timer === null) this.#armTimer();
  }

  /** Writes what is queued now and resolves once every queued line was written (or the target failed). */
  async flush(): Promise<void> {
    while (this.#timer !== null || this.#draining !== null) {
      if (this.#timer !== null) this.#startDrain();
      await this.#draining;
    }
  }

  #armTimer(): void {
    this.#timer = setTimeout(this.#startDrain, this.#batchMs);
    // The log never keeps a process alive; a stop calls flush().
    Deno.unrefTimer(this.#timer);
  }

  #startDrain = (): void => {
    if (this.#timer !== null) clearTimeout(this.#timer);
    this.#timer = null;
    this.#draining ??= this.#writeBatch();
  };

  /** Writes everything queued as one batch; what queues meanwhile goes in the next batch. */
  async #writeBatch(): Promise<void> {
    try {
      const bytes = encoder.encode(this.#queue.join("\n") + "\n");
      this.#queue = [];
      this.#queuedBytes = 0;
      let written = 0;
      while (written < bytes.length) written += await this.#target.write(bytes.subarray(written));
    } catch {
      // A closed stdout (the reader went away) loses the log, never the request.
      this.#queue = [];
      this.#queuedBytes = 0;
    } finally {
      this.#draining = null;
      if (this.#queue.length > 0) this.#armTimer();
    }
  }
}
