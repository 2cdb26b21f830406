/**
 * A raw TCP server for HTTP/1.1 client tests: it writes exactly the bytes a test scripts, so framing edge
 * cases (split size lines, missing terminators, early closes, stalls) are under the test's control.
 */
import assert from "node:assert/strict";
import { Http1Agent, type Http1AgentOptions } from "../../lib/providers/http1_client.ts";

export const encoder = new TextEncoder();
export const decoder = new TextDecoder();
export const latin1 = new TextDecoder("latin1");

/** Bytes to write, or an event to wait for before writing the next part. */
export type Part = string | Uint8Array | (() => Promise<unknown>);

/** The answer to one request; `close` hangs up after writing it. */
export interface Reply {
  parts: Part[];
  close?: boolean;
}

export interface SeenRequest {
  /** Index of the accepted connection the request came in on. */
  connection: number;
  head: string;
  body: Uint8Array;
}

/** How the server side of a connection ended: the client closed it, or the script hung up. */
export type Ending = "eof" | "reset" | "hangup";

export function concatBytes(a: Uint8Array, b: Uint8Array): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

function deferred<T>(map: Map<number, PromiseWithResolvers<T>>, index: number): PromiseWithResolvers<T> {
  let slot = map.get(index);
  if (slot === undefined) map.set(index, slot = Promise.withResolvers<T>());
  return slot;
}

/** Answers requests, across all connections, with `replies` in order. */
export class ScriptedServer implements AsyncDisposable {
  readonly requests: SeenRequest[] = [];
  accepted = 0;
  readonly #listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  readonly #replies: Reply[];
  readonly #open = new Set<Deno.TcpConn>();
  readonly #serving: Promise<void>[] = [];
  readonly #accepting: Promise<void>;
  readonly #received = new Map<number, PromiseWithResolvers<void>>();
  readonly #ended = new Map<number, PromiseWithResolvers<Ending>>();
  // Lets disposal finish when a failed test never opened a gate the script is waiting on.
  readonly #disposed = Promise.withResolvers<void>();

  constructor(replies: Reply[]) {
    this.#replies = [...replies];
    this.#accepting = this.#accept();
  }

  get port(): number {
    return this.#listener.addr.port;
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** Resolves once the request with this index (0-based, over all connections) has been read. */
  received(index: number): Promise<void> {
    return deferred(this.#received, index).promise;
  }

  /** Resolves once the server side of the connection with this index is done. */
  ended(index: number): Promise<Ending> {
    return deferred(this.#ended, index).promise;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    this.#disposed.resolve();
    this.#listener.close();
    await this.#accepting;
    for (const conn of this.#open) conn.close();
    await Promise.all(this.#serving);
  }

  async #accept(): Promise<void> {
    try {
      for (;;) {
        const conn = await this.#listener.accept();
        conn.setNoDelay(true);
        this.#open.add(conn);
        this.#serving.push(this.#serve(conn, this.accepted++));
      }
    } catch {
      // The listener was closed by dispose.
    }
  }

  async #serve(conn: Deno.TcpConn, index: number): Promise<void> {
    let buffered: Uint8Array = new Uint8Array(0);
    const scratch = new Uint8Array(16 * 1024);
    let ending: Ending = "eof";
    try {
      for (;;) {
        let request: SeenRequest | undefined;
        while (request === undefined) {
          const headEnd = latin1.decode(buffered).indexOf("\r\n\r\n");
          if (headEnd !== -1) {
            const head = latin1.decode(buffered.subarray(0, headEnd));
            // The last content-length is the client's own; a duplicate smuggled in by a caller header
            // then fails the test's header assertions instead of hanging this read.
            const lengths = [...head.matchAll(/^content-length:\s*(\d+)/gim)];
            const length = Number(lengths.at(-1)?.[1] ?? 0);
            const end = headEnd + 4 + length;
            if (buffered.length >= end) {
              request = { connection: index, head, body: buffered.slice(headEnd + 4, end) };
              buffered = buffered.slice(end);
              break;
            }
          }
          const n = await conn.read(scratch);
          if (n === null) return;
          buffered = concatBytes(buffered, scratch.subarray(0, n));
        }
        this.requests.push(request);
        deferred(this.#received, this.requests.length - 1).resolve();
        const reply = this.#replies.shift();
        // An unscripted request gets a hang-up, so the test fails on what the client saw.
        if (reply === undefined) return void (ending = "hangup");
        for (const part of reply.parts) {
          if (typeof part === "function") await Promise.race([part(), this.#disposed.promise]);
          else {
            const bytes = typeof part === "string" ? encoder.encode(part) : part;
            for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
          }
        }
        if (reply.close) return void (ending = "hangup");
      }
    } catch {
      ending = "reset";
    } finally {
      this.#open.delete(conn);
      try {
        conn.close();
      } catch {
        // Already closed by dispose.
      }
      deferred(this.#ended, index).resolve(ending);
    }
  }
}

export function newAgent(options?: Http1AgentOptions): Http1Agent & Disposable {
  const agent = new Http1Agent(options);
  return Object.assign(agent, { [Symbol.dispose]: () => agent.close() });
}

/** A complete answer framed by content-length. */
export function lengthAnswer(body: string, status = "200 OK", headers: string[] = []): string {
  const fields = headers.map((field) => `${field}\r\n`).join("");
  return `HTTP/1.1 ${status}\r\n${fields}content-length: ${encoder.encode(body).length}\r\n\r\n${body}`;
}

export const CHUNKED_HEAD =
  "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\ntransfer-encoding: chunked\r\n\r\n";

export function parseHead(head: string): { line: string; headers: Headers; names: string[] } {
  const [line, ...fields] = head.split("\r\n");
  const pairs = fields.map((field): [string, string] => {
    const colon = field.indexOf(":");
    return [field.slice(0, colon).trim(), field.slice(colon + 1).trim()];
  });
  return { line, headers: new Headers(pairs), names: pairs.map(([name]) => name.toLowerCase()) };
}

/** Reads from `reader` until `expected` bytes have arrived, and checks them. */
export async function readExactly(
  reader: ReadableStreamDefaultReader<Uint8Array>,
  expected: string,
): Promise<void> {
  const want = encoder.encode(expected);
  let got: Uint8Array = new Uint8Array(0);
  while (got.length < want.length) {
    const { done, value } = await reader.read();
    assert.equal(done, false, `the body ended after ${JSON.stringify(decoder.decode(got))}`);
    got = concatBytes(got, value!);
  }
  assert.deepEqual(got, want);
}

/** Settles a fetch into its status and body text, or the error, so no response is left unread. */
export async function outcome(
  response: ReturnType<Http1Agent["fetch"]>,
): Promise<{ status: number; text: string } | Error> {
  try {
    const res = await response;
    return { status: res.status, text: await res.text() };
  } catch (error) {
    return error as Error;
  }
}
