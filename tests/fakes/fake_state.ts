/**
 * Shared bookkeeping for the fake upstream servers: failure modes, received requests, per-model
 * in-flight counters, client aborts, a hold gate, and promises that resolve on events (never sleeps).
 */
import { createHash } from "node:crypto";
import canonicalize from "canonicalize";

/** How a fake misbehaves; `normal` answers properly. */
export type FakeMode =
  | "normal"
  | "busy"
  | "error500"
  | "rate_limit"
  | "hang"
  | "cut_stream"
  | "midstream_error"
  | "auth_fail"
  /** Answers 200 with its headers, then sends no byte of the body until the client goes away. */
  | "stall_after_headers"
  /** Sends the first events of a stream (half of a JSON body), then nothing until the client goes away. */
  | "stall_between_events"
  /** Answers normally, but calls every offered tool at once (one call each) where it would call one. */
  | "parallel_tools";

/** A hold on chat requests; `release()` lets the held (and later) requests proceed. */
export interface FakeHold {
  release(): void;
}

/** Counters and event waits shared by the fakes. */
export class FakeState<M extends string = FakeMode> {
  /** The current failure mode; tests set it between requests. */
  mode: M;
  /** Every JSON body the chat endpoint received, in order. */
  readonly requests: unknown[] = [];
  /** The request headers of each of `requests` (same index), as the server received them. */
  readonly requestHeaders: Headers[] = [];
  /** Chat requests currently being answered, per model. */
  readonly inFlight: Map<string, number> = new Map();
  /** The most chat requests ever in flight at once, per model. */
  readonly maxInFlight: Map<string, number> = new Map();
  /** Requests whose client went away before the answer ended. */
  aborted = 0;
  #waiters = new Set<() => void>();
  #gate: PromiseWithResolvers<void> | null = null;

  /** Builds state in the given mode. */
  constructor(mode: M) {
    this.mode = mode;
  }

  /** Re-checks every pending wait; call after any counter changes. */
  notify(): void {
    for (const check of [...this.#waiters]) check();
  }

  /** Resolves once `predicate` holds (checked now and after every state change). */
  waitFor(predicate: () => boolean): Promise<void> {
    if (predicate()) return Promise.resolve();
    return new Promise((resolve) => {
      const check = () => {
        if (!predicate()) return;
        this.#waiters.delete(check);
        resolve();
      };
      this.#waiters.add(check);
    });
  }

  /** Resolves once `n` chat requests have arrived. */
  waitForRequests(n: number): Promise<void> {
    return this.waitFor(() => this.requests.length >= n);
  }

  /** Resolves once `n` clients have gone away mid-answer. */
  waitForAborted(n: number): Promise<void> {
    return this.waitFor(() => this.aborted >= n);
  }

  /** Resolves once `n` requests for `model` are in flight at the same time. */
  waitForInFlight(model: string, n: number): Promise<void> {
    return this.waitFor(() => (this.inFlight.get(model) ?? 0) >= n);
  }

  /** Records an arriving JSON body. */
  record(body: unknown, headers: Headers = new Headers()): void {
    this.requests.push(body);
    this.requestHeaders.push(headers);
    this.notify();
  }

  /** Counts a request as in flight for `model`; the returned function ends it (idempotent). */
  enter(model: string): (outcome: "done" | "aborted") => void {
    const now = (this.inFlight.get(model) ?? 0) + 1;
    this.inFlight.set(model, now);
    this.maxInFlight.set(model, Math.max(now, this.maxInFlight.get(model) ?? 0));
    this.notify();
    let ended = false;
    return (outcome) => {
      if (ended) return;
      ended = true;
      this.inFlight.set(model, (this.inFlight.get(model) ?? 1) - 1);
      if (outcome === "aborted") this.aborted++;
      this.notify();
    };
  }

  /** Makes subsequent chat requests wait (while counted in flight) until `release()`. */
  hold(): FakeHold {
    const gate = Promise.withResolvers<void>();
    this.#gate = gate;
    return {
      release: () => {
        if (this.#gate === gate) this.#gate = null;
        gate.resolve();
      },
    };
  }

  /** The current gate, if requests must wait. */
  get gate(): Promise<void> | null {
    return this.#gate?.promise ?? null;
  }
}

/**
 * Waits for `until` (or forever when it is null) unless the client goes away or the fake closes first.
 * Listeners on `request.signal` are removed afterwards: Deno also aborts that signal after a successful
 * response (legacy behaviour), which must not count as a client going away.
 */
export function waitUnlessGone(
  request: Request,
  closing: AbortSignal,
  until: Promise<void> | null,
): Promise<"ok" | "aborted" | "closing"> {
  if (request.signal.aborted) return Promise.resolve("aborted");
  if (closing.aborted) return Promise.resolve("closing");
  return new Promise((resolve) => {
    const onAbort = () => finish("aborted");
    const onClose = () => finish("closing");
    const finish = (outcome: "ok" | "aborted" | "closing") => {
      request.signal.removeEventListener("abort", onAbort);
      closing.removeEventListener("abort", onClose);
      resolve(outcome);
    };
    request.signal.addEventListener("abort", onAbort);
    closing.addEventListener("abort", onClose);
    until?.then(() => finish("ok"));
  });
}

/** First hex digits of the SHA-256 of a value's RFC 8785 canonical JSON: the fakes' deterministic answers. */
export function answerHash(value: unknown): string {
  return createHash("sha256").update(canonicalize(value) ?? "null").digest("hex");
}

const CHUNK_SIZES = [1, 17, 3, 61, 7, 131, 5, 37];

/**
 * Splits bytes at arbitrary, deterministic offsets so events and lines arrive torn across writes; every
 * multi-byte UTF-8 character is also cut after its first byte, so decoders must carry partial characters.
 */
export function tear(bytes: Uint8Array): Uint8Array[] {
  const cuts = new Set<number>();
  let offset = 0;
  let i = 0;
  while (offset < bytes.length) {
    offset += CHUNK_SIZES[i++ % CHUNK_SIZES.length];
    cuts.add(Math.min(offset, bytes.length));
  }
  for (let j = 0; j < bytes.length; j++) {
    if (bytes[j] >= 0xc0) cuts.add(j + 1);
  }
  const sorted = [...cuts].sort((a, b) => a - b);
  const out: Uint8Array[] = [];
  let from = 0;
  for (const cut of sorted) {
    if (cut > from) out.push(bytes.slice(from, cut));
    from = cut;
  }
  if (from < bytes.length) out.push(bytes.slice(from));
  return out;
}

/**
 * A response body that sends `pieces` one write at a time, then ends the request's in-flight count;
 * a client that goes away first is counted as aborted.
 */
export function writeSlowly(
  pieces: Uint8Array[],
  end: (outcome: "done" | "aborted") => void,
): ReadableStream<Uint8Array> {
  let i = 0;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < pieces.length) {
        controller.enqueue(pieces[i++]);
        return;
      }
      controller.close();
      end("done");
    },
    cancel() {
      end("aborted");
    },
  }, { highWaterMark: 0 });
}

/** Splits an answer into word-sized pieces, each carrying its leading space. */
export function words(text: string): string[] {
  return text.match(/\s*\S+/g) ?? [];
}

/** A rough, deterministic prompt-token count. */
export function countTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

/**
 * A response body that sends `pieces`, then stalls without ending until the client goes away (counted as
 * aborted) or the fake closes (ended cleanly, so the fake's server can shut down).
 */
export function writeThenStall(
  pieces: Uint8Array[],
  end: (outcome: "done" | "aborted") => void,
  closing: AbortSignal,
): ReadableStream<Uint8Array> {
  let i = 0;
  const onClose = () => {
    end("done");
    try {
      stalled?.close();
    } catch { /* the client already went away */ }
  };
  let stalled: ReadableStreamDefaultController<Uint8Array> | null = null;
  return new ReadableStream<Uint8Array>({
    pull(controller) {
      if (i < pieces.length) {
        controller.enqueue(pieces[i++]);
        return;
      }
      if (stalled) return;
      stalled = controller;
      if (closing.aborted) onClose();
      else closing.addEventListener("abort", onClose, { once: true });
    },
    cancel() {
      closing.removeEventListener("abort", onClose);
      end("aborted");
    },
  }, { highWaterMark: 0 });
}

/**
 * The arguments the fakes call a tool with: a value per property of its JSON schema ("Paris" for strings,
 * 1 for numbers, true for booleans), or `{ city: "Paris" }` for a schema that names no properties.
 */
export function sampleArguments(schema: unknown): Record<string, unknown> {
  const properties = (schema as { properties?: unknown } | null)?.properties;
  if (properties === null || typeof properties !== "object" || Object.keys(properties).length === 0) {
    return { city: "Paris" };
  }
  const out: Record<string, unknown> = {};
  for (const [name, prop] of Object.entries(properties)) {
    const type = (prop as { type?: unknown } | null)?.type;
    out[name] = type === "number" || type === "integer" ? 1 : type === "boolean" ? true : "Paris";
  }
  return out;
}
