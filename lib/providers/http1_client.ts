/**
 * A keep-alive HTTP/1.1 client over `Deno.connect`, used for plain-http upstreams (a local Ollama host,
 * an OpenAI-compatible server on the LAN). Cloud providers speak https and keep going through `fetch`.
 *
 * Why not `fetch` for these: forwarding through a direct socket costs less CPU per request than `fetch`
 * (the figures, and the rule that keeps this client only while the shared bench shows it paying for
 * itself, are in docs/performance.md), and a streamed answer arrives in one socket read per burst instead
 * of one body chunk per upstream event. `fetch` is its plain twin: `HI_UPSTREAM_CLIENT=fetch` selects it,
 * and tests/providers/http1_equivalence_test.ts holds the two to the same answers.
 *
 * What it does: requests with a fixed-length body, responses framed by `content-length`, chunked
 * transfer coding or connection close; 1xx interim responses are skipped. Connections are reused only
 * after a fully read, cleanly framed response. A reused connection that fails before any response byte
 * arrived (the server closed it while idle) is retried once on a fresh one. An aborted signal closes the
 * socket, which ends any pending read. A response that carries both transfer-encoding and content-length
 * is refused (RFC 9112 §6.3 calls it a possible smuggling attempt). Idle sockets older than the idle
 * timeout are closed by a sweep, and a read that waits longer than the read timeout closes its socket:
 * the adapters' own deadlines normally end a call first, this is the backstop for any caller.
 */

import { concatBytes } from "../bytes.ts";

/** The request options this client understands (a subset of `RequestInit`). */
export interface UpstreamInit {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array<ArrayBuffer>;
  signal?: AbortSignal;
}

/** The parts of a `Response` the adapters read; `fetch`'s `Response` has them too. */
export interface UpstreamResponse {
  readonly ok: boolean;
  readonly status: number;
  readonly headers: Headers;
  readonly body: ReadableStream<Uint8Array> | null;
  json(): Promise<unknown>;
  text(): Promise<string>;
}

/** A `fetch`-shaped function the adapters call; `globalThis.fetch` is one. */
export type UpstreamFetch = (url: string, init: UpstreamInit) => Promise<UpstreamResponse>;

/** Options for `Http1Agent`. */
export interface Http1AgentOptions {
  /** Idle connections kept per host (default 256). */
  maxIdlePerHost?: number;
  /** An idle connection older than this is closed, never reused (default 4 s; servers close idle sockets). */
  idleTimeoutMs?: number;
  /** A socket read that gets no byte for this long closes the connection (default 10 minutes). */
  readTimeoutMs?: number;
}

/** A response head or body that breaks HTTP/1.1 framing. */
export class Http1ProtocolError extends Error {
  override name = "Http1ProtocolError";
}

const READ_SIZE = 64 * 1024;
const MAX_HEAD_BYTES = 64 * 1024;
const EMPTY = new Uint8Array(0);
const encoder = new TextEncoder();
const decoder = new TextDecoder();
const latin1 = new TextDecoder("latin1");
const FORBIDDEN_HEADERS = new Set(["host", "content-length", "connection", "transfer-encoding"]);
const STATUS_LINE = /^HTTP\/1\.([01]) (\d{3})(?: .*)?$/;
const TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
const BAD_VALUE = /[\0\r\n]/;

function indexOfHeadEnd(bytes: Uint8Array): number {
  for (let i = 3; i < bytes.length; i++) {
    if (bytes[i] === 10 && bytes[i - 1] === 13 && bytes[i - 2] === 10 && bytes[i - 3] === 13) return i + 1;
  }
  return -1;
}

function indexOfCrlf(bytes: Uint8Array, from: number): number {
  for (let i = from + 1; i < bytes.length; i++) {
    if (bytes[i] === 10 && bytes[i - 1] === 13) return i - 1;
  }
  return -1;
}

function assertHeaderText(text: string, what: string): void {
  if (/[\r\n\0]/.test(text)) throw new TypeError(`an upstream request ${what} contains a line break`);
}

/** One socket with the bytes read from it but not consumed yet. */
class Http1Connection {
  readonly key: string;
  idleSince = 0;
  reused = false;
  #conn: Deno.TcpConn;
  #scratch = new Uint8Array(READ_SIZE);
  #pending: Uint8Array = EMPTY;
  #closed = false;
  /** Whether the current exchange has read any byte; a request that got none may be resent. */
  answered = false;
  /** Whether a socket read is pending, and how many reads have completed (the sweep watches both). */
  reading = false;
  readsDone = 0;
  /** The sweep's view: `readsDone` when it last looked, and since when that count has not moved. */
  sweepSawReads = -1;
  stalledSince = 0;
  /** Set by the agent's sweep when a read waited too long; the read then fails with this message. */
  timedOut: string | null = null;

  constructor(key: string, conn: Deno.TcpConn) {
    this.key = key;
    this.#conn = conn;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get pending(): Uint8Array {
    return this.#pending;
  }

  set pending(bytes: Uint8Array) {
    this.#pending = bytes;
  }

  async write(bytes: Uint8Array): Promise<void> {
    let offset = 0;
    while (offset < bytes.length) offset += await this.#conn.write(bytes.subarray(offset));
  }

  /** Appends the next socket read to `pending`; false at end of stream. */
  async fill(): Promise<boolean> {
    // No clock read here: the sweep notices a read that makes no progress (see Http1Agent's sweep).
    this.reading = true;
    let n: number | null;
    try {
      n = await this.#conn.read(this.#scratch);
    } catch (error) {
      if (this.timedOut !== null) throw new Http1ProtocolError(this.timedOut);
      throw error;
    } finally {
      this.reading = false;
      this.readsDone++;
    }
    if (this.timedOut !== null) throw new Http1ProtocolError(this.timedOut);
    if (n === null) return false;
    this.answered = true;
    const fresh = this.#scratch.slice(0, n);
    this.#pending = this.#pending.length === 0 ? fresh : concatBytes([this.#pending, fresh]);
    return true;
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer or by an abort: nothing to release.
    }
  }
}

type Framing =
  | { kind: "none" }
  | { kind: "length"; remaining: number }
  | { kind: "chunked"; chunkLeft: number; state: "size" | "data" | "data_end" | "trailers" }
  | { kind: "eof" };

interface ResponseHead {
  status: number;
  minor: number;
  fields: [string, string][];
}

/** Reads a response head from `connection`; null when the socket ended before any byte of it. */
async function readHead(connection: Http1Connection): Promise<ResponseHead | null> {
  let end = indexOfHeadEnd(connection.pending);
  while (end === -1) {
    if (connection.pending.length > MAX_HEAD_BYTES) {
      throw new Http1ProtocolError("the upstream sent a response head over 64 KiB");
    }
    const before = connection.pending.length;
    if (!(await connection.fill())) {
      if (before === 0) return null;
      throw new Http1ProtocolError("the upstream closed the connection inside a response head");
    }
    end = indexOfHeadEnd(connection.pending);
  }
  const text = latin1.decode(connection.pending.subarray(0, end - 4));
  connection.pending = connection.pending.subarray(end);
  const lines = text.split("\r\n");
  const statusLine = STATUS_LINE.exec(lines[0]);
  if (statusLine === null) throw new Http1ProtocolError("the upstream sent a malformed status line");
  const fields: [string, string][] = [];
  for (let i = 1; i < lines.length; i++) {
    const colon = lines[i].indexOf(":");
    const name = colon > 0 ? lines[i].slice(0, colon) : "";
    const value = lines[i].slice(colon + 1).trim();
    if (!TOKEN.test(name) || BAD_VALUE.test(value)) {
      throw new Http1ProtocolError("the upstream sent a malformed header line");
    }
    fields.push([name.toLowerCase(), value]);
  }
  return { status: Number(statusLine[2]), minor: Number(statusLine[1]), fields };
}

function framingOf(head: ResponseHead, method: string): { framing: Framing; keepAlive: boolean } {
  let contentLength: string | undefined;
  let transferEncoding = "";
  let connectionTokens = "";
  for (const [name, value] of head.fields) {
    if (name === "content-length") {
      if (contentLength !== undefined && contentLength !== value) {
        throw new Http1ProtocolError("the upstream sent conflicting content-length headers");
      }
      contentLength = value;
    } else if (name === "transfer-encoding") {
      transferEncoding += `${transferEncoding ? "," : ""}${value.toLowerCase()}`;
    } else if (name === "connection") {
      connectionTokens += `,${value.toLowerCase()}`;
    }
  }
  if (transferEncoding !== "" && contentLength !== undefined) {
    throw new Http1ProtocolError(
      "the upstream sent both transfer-encoding and content-length, which RFC 9112 treats as a possible " +
        "response-smuggling attempt",
    );
  }
  const keepAlive = head.minor === 1
    ? !/(^|,)\s*close\s*(,|$)/.test(connectionTokens)
    : /(^|,)\s*keep-alive\s*(,|$)/.test(connectionTokens);
  if (method === "HEAD" || head.status === 204 || head.status === 304) {
    return { framing: { kind: "none" }, keepAlive };
  }
  if (transferEncoding !== "") {
    const codings = transferEncoding.split(",").map((c) => c.trim());
    if (codings[codings.length - 1] !== "chunked") return { framing: { kind: "eof" }, keepAlive: false };
    return { framing: { kind: "chunked", chunkLeft: 0, state: "size" }, keepAlive };
  }
  if (contentLength !== undefined) {
    if (!/^\d{1,15}$/.test(contentLength)) {
      throw new Http1ProtocolError("the upstream sent an invalid content-length");
    }
    const remaining = Number(contentLength);
    return { framing: remaining === 0 ? { kind: "none" } : { kind: "length", remaining }, keepAlive };
  }
  return { framing: { kind: "eof" }, keepAlive: false };
}

/**
 * Decodes as much chunked body as `pending` holds. Returns the data pieces found and whether the last
 * chunk (and its trailers) has been read; leaves a partial frame in `pending`.
 */
function decodeChunked(
  connection: Http1Connection,
  framing: Extract<Framing, { kind: "chunked" }>,
): { pieces: Uint8Array[]; finished: boolean } {
  const pieces: Uint8Array[] = [];
  let bytes = connection.pending;
  let offset = 0;
  let finished = false;
  while (offset < bytes.length && !finished) {
    if (framing.state === "data") {
      const take = Math.min(framing.chunkLeft, bytes.length - offset);
      pieces.push(bytes.subarray(offset, offset + take));
      offset += take;
      framing.chunkLeft -= take;
      if (framing.chunkLeft === 0) framing.state = "data_end";
      continue;
    }
    const lineEnd = indexOfCrlf(bytes, offset);
    if (lineEnd === -1) {
      if (bytes.length - offset > 4096) {
        throw new Http1ProtocolError("the upstream sent an overlong chunk line");
      }
      break;
    }
    const line = latin1.decode(bytes.subarray(offset, lineEnd));
    offset = lineEnd + 2;
    if (framing.state === "data_end") {
      if (line !== "") throw new Http1ProtocolError("the upstream sent a chunk longer than its size");
      framing.state = "size";
    } else if (framing.state === "size") {
      const size = /^([0-9a-fA-F]{1,12})[ \t]*(;.*)?$/.exec(line);
      if (size === null) throw new Http1ProtocolError("the upstream sent a malformed chunk size");
      framing.chunkLeft = parseInt(size[1], 16);
      framing.state = framing.chunkLeft === 0 ? "trailers" : "data";
    } else if (line === "") {
      finished = true;
    }
  }
  bytes = bytes.subarray(offset);
  connection.pending = bytes;
  return { pieces, finished };
}

/** The answer to one request; its body is read once, as a stream or whole. */
class Http1Response implements UpstreamResponse {
  readonly status: number;
  readonly ok: boolean;
  #fields: [string, string][];
  #headers?: Headers;
  #body?: ReadableStream<Uint8Array> | null;
  #used = false;
  #connection: Http1Connection;
  #framing: Framing;
  #done: (reusable: boolean) => void;
  #keepAlive: boolean;
  #finished = false;

  constructor(
    head: ResponseHead,
    connection: Http1Connection,
    framing: Framing,
    keepAlive: boolean,
    done: (reusable: boolean) => void,
  ) {
    this.status = head.status;
    this.ok = head.status >= 200 && head.status < 300;
    this.#fields = head.fields;
    this.#connection = connection;
    this.#framing = framing;
    this.#keepAlive = keepAlive;
    this.#done = done;
    if (framing.kind === "none") this.#finish();
  }

  get headers(): Headers {
    return this.#headers ??= new Headers(this.#fields);
  }

  get body(): ReadableStream<Uint8Array> | null {
    if (this.#body !== undefined) return this.#body;
    this.#claim();
    this.#body = new ReadableStream<Uint8Array>({
      pull: async (controller) => {
        try {
          const piece = await this.#next();
          if (piece === null) controller.close();
          else controller.enqueue(piece);
        } catch (error) {
          this.#abandon();
          controller.error(error);
        }
      },
      cancel: () => this.#abandon(),
    });
    return this.#body;
  }

  async text(): Promise<string> {
    this.#claim();
    try {
      return decoder.decode(await this.#readAll());
    } catch (error) {
      this.#abandon();
      throw error;
    }
  }

  async json(): Promise<unknown> {
    return JSON.parse(await this.text());
  }

  #claim(): void {
    if (this.#used) throw new TypeError("the upstream response body was already read");
    this.#used = true;
  }

  async #readAll(): Promise<Uint8Array> {
    const pieces: Uint8Array[] = [];
    for (let piece = await this.#next(); piece !== null; piece = await this.#next()) pieces.push(piece);
    return pieces.length === 0 ? EMPTY : concatBytes(pieces);
  }

  /** The next piece of the body; null once it has all been read. */
  async #next(): Promise<Uint8Array | null> {
    const connection = this.#connection;
    const framing = this.#framing;
    while (!this.#finished) {
      if (framing.kind === "length") {
        const available = connection.pending;
        if (available.length > 0) {
          const take = Math.min(framing.remaining, available.length);
          const piece = available.subarray(0, take);
          connection.pending = available.subarray(take);
          framing.remaining -= take;
          if (framing.remaining === 0) this.#finish();
          return piece;
        }
      } else if (framing.kind === "chunked") {
        const { pieces, finished } = decodeChunked(connection, framing);
        if (finished) this.#finish();
        if (pieces.length > 0) return concatBytes(pieces);
        if (finished) return null;
      } else if (framing.kind === "eof" && connection.pending.length > 0) {
        const piece = connection.pending;
        connection.pending = EMPTY;
        return piece;
      }
      if (!(await connection.fill())) {
        if (framing.kind !== "eof") {
          throw new Http1ProtocolError("the upstream closed the connection before the body ended");
        }
        this.#finish();
      }
    }
    return null;
  }

  #finish(): void {
    if (this.#finished) return;
    this.#finished = true;
    const reusable = this.#keepAlive && this.#framing.kind !== "eof" && this.#connection.pending.length === 0;
    this.#done(reusable);
  }

  #abandon(): void {
    if (this.#finished) return;
    this.#finished = true;
    this.#done(false);
  }
}

interface Target {
  key: string;
  hostname: string;
  port: number;
  /** The request line's target and the host header for this URL. */
  path: string;
  host: string;
}

/** Parsed targets an agent keeps at most: a router calls the same few provider URLs. */
const MAX_CACHED_TARGETS = 256;

function parseTarget(url: string): Target {
  const parsed = new URL(url);
  if (parsed.protocol !== "http:") {
    throw new TypeError(`the http/1.1 client only speaks http:, not ${parsed.protocol}`);
  }
  const hostname = parsed.hostname.startsWith("[") ? parsed.hostname.slice(1, -1) : parsed.hostname;
  const port = parsed.port === "" ? 80 : Number(parsed.port);
  return {
    key: `${hostname}:${port}`,
    hostname,
    port,
    path: `${parsed.pathname}${parsed.search}`,
    host: parsed.host,
  };
}

/** A pool of keep-alive connections per host, and the `fetch`-shaped call that uses them. */
export class Http1Agent {
  /** Per host, oldest first: reuse takes the newest (warmest) socket, the sweep closes from the front. */
  #idle = new Map<string, Http1Connection[]>();
  #maxIdlePerHost: number;
  #idleTimeoutMs: number;
  #readTimeoutMs: number;
  #closed = false;
  #busy = new Set<Http1Connection>();
  /** Each URL parsed once (`parseTarget`), by URL. */
  #targets = new Map<string, Target>();
  #sweepTimer: ReturnType<typeof setInterval> | null = null;

  constructor(options: Http1AgentOptions = {}) {
    this.#maxIdlePerHost = options.maxIdlePerHost ?? 256;
    this.#idleTimeoutMs = options.idleTimeoutMs ?? 4_000;
    this.#readTimeoutMs = options.readTimeoutMs ?? 600_000;
  }

  /** Sends one request; resolves at the response head, like `fetch`. Rejects on connect or framing errors. */
  readonly fetch = async (url: string, init: UpstreamInit = {}): Promise<UpstreamResponse> => {
    if (this.#closed) throw new TypeError("the http/1.1 client is closed");
    const target = this.#targetOf(url);
    const method = (init.method ?? "GET").toUpperCase();
    const request = this.#encodeRequest(target, method, init);
    const signal = init.signal;
    signal?.throwIfAborted();
    let connection = this.#takeIdle(target.key);
    try {
      return await this.#exchange(connection ?? await this.#connect(target, signal), method, request, signal);
    } catch (error) {
      if (!(error instanceof StaleConnection)) throw error;
      // The server closed the idle socket before reading our request: a fresh connection is safe.
      connection = await this.#connect(target, signal);
      return await this.#exchange(connection, method, request, signal);
    }
  };

  /** Closes idle connections now and busy ones as their responses end. */
  close(): void {
    this.#closed = true;
    this.#stopSweep();
    for (const list of this.#idle.values()) for (const connection of list) connection.close();
    this.#idle.clear();
  }

  /** Open sockets, idle and busy (for tests and metrics). */
  get openConnections(): number {
    let idle = 0;
    for (const list of this.#idle.values()) idle += list.length;
    return idle + this.#busy.size;
  }

  #encodeRequest(target: Target, method: string, init: UpstreamInit): Uint8Array {
    if (!/^[A-Z]+$/.test(method)) throw new TypeError("an upstream request method must be a plain token");
    const body = init.body === undefined
      ? EMPTY
      : typeof init.body === "string"
      ? encoder.encode(init.body)
      : init.body;
    let head = `${method} ${target.path} HTTP/1.1\r\nhost: ${target.host}\r\n`;
    for (const name in init.headers) {
      const value = init.headers[name];
      assertHeaderText(name, "header name");
      assertHeaderText(value, "header value");
      if (FORBIDDEN_HEADERS.has(name.toLowerCase())) continue;
      head += `${name}: ${value}\r\n`;
    }
    if (init.body !== undefined || method === "POST" || method === "PUT" || method === "PATCH") {
      head += `content-length: ${body.length}\r\n`;
    }
    head += "\r\n";
    const headBytes = encoder.encode(head);
    return body.length === 0 ? headBytes : concatBytes([headBytes, body]);
  }

  #targetOf(url: string): Target {
    let target = this.#targets.get(url);
    if (target === undefined) {
      target = parseTarget(url);
      if (this.#targets.size >= MAX_CACHED_TARGETS) this.#targets.clear();
      this.#targets.set(url, target);
    }
    return target;
  }

  #takeIdle(key: string): Http1Connection | undefined {
    const list = this.#idle.get(key);
    if (list === undefined || list.length === 0) return undefined;
    const now = Date.now();
    // The newest socket is the least likely to have been closed by the server.
    const connection = list.pop()!;
    if (now - connection.idleSince <= this.#idleTimeoutMs) {
      connection.reused = true;
      return connection;
    }
    // The newest is too old, so every older one is too.
    connection.close();
    this.#closeIdleOlderThan(list, now);
    return undefined;
  }

  /** Closes the idle sockets of `list` past the idle timeout; they sit at its front. */
  #closeIdleOlderThan(list: Http1Connection[], now: number): void {
    let stale = 0;
    while (stale < list.length && now - list[stale].idleSince > this.#idleTimeoutMs) list[stale++].close();
    if (stale > 0) list.splice(0, stale);
  }

  /**
   * Runs while any connection is open: closes idle sockets past the idle timeout (traffic alone never
   * reaches the oldest ones, since reuse takes the newest) and busy ones whose read waited past the read
   * timeout. One interval per agent, not one timer per read, keeps the request path free of timers.
   */
  #sweep = (): void => {
    const now = Date.now();
    for (const [key, list] of this.#idle) {
      this.#closeIdleOlderThan(list, now);
      if (list.length === 0) this.#idle.delete(key);
    }
    for (const connection of this.#busy) {
      if (!connection.reading || connection.readsDone !== connection.sweepSawReads) {
        connection.sweepSawReads = connection.readsDone;
        connection.stalledSince = now;
      } else if (now - connection.stalledSince > this.#readTimeoutMs) {
        connection.timedOut = `the upstream sent no byte for ${this.#readTimeoutMs} ms`;
        connection.close();
      }
    }
    if (this.#idle.size === 0 && this.#busy.size === 0) this.#stopSweep();
  };

  #startSweep(): void {
    if (this.#sweepTimer !== null || this.#closed) return;
    const every = Math.max(10, Math.min(this.#idleTimeoutMs, this.#readTimeoutMs) / 2);
    this.#sweepTimer = setInterval(this.#sweep, every);
    // Open sockets keep the process alive on their own terms; the sweep never should.
    Deno.unrefTimer(this.#sweepTimer);
  }

  #stopSweep(): void {
    if (this.#sweepTimer === null) return;
    clearInterval(this.#sweepTimer);
    this.#sweepTimer = null;
  }

  async #connect(target: Target, signal: AbortSignal | undefined): Promise<Http1Connection> {
    const conn = await Deno.connect({ hostname: target.hostname, port: target.port, signal });
    if (signal?.aborted) {
      conn.close();
      signal.throwIfAborted();
    }
    conn.setNoDelay(true);
    this.#startSweep();
    return new Http1Connection(target.key, conn);
  }

  async #exchange(
    connection: Http1Connection,
    method: string,
    request: Uint8Array,
    signal: AbortSignal | undefined,
  ): Promise<UpstreamResponse> {
    this.#busy.add(connection);
    // An abort ends the exchange even if nobody reads or cancels the body afterwards.
    const onAbort = () => done(false);
    signal?.addEventListener("abort", onAbort, { once: true });
    const done = (reusable: boolean) => {
      signal?.removeEventListener("abort", onAbort);
      this.#busy.delete(connection);
      if (reusable && !connection.closed) this.#release(connection);
      else connection.close();
    };
    // Only a reused connection that has not sent a single byte back is stale: the server closed it
    // while idle. Anything it did send means it may have acted on the request, so that is never resent.
    const resendable = () => connection.reused && !connection.answered && !signal?.aborted;
    connection.answered = false;
    try {
      let head: ResponseHead | null;
      try {
        await connection.write(request);
        head = await readHead(connection);
        while (head !== null && head.status >= 100 && head.status < 200) head = await readHead(connection);
      } catch (error) {
        if (resendable()) throw new StaleConnection();
        throw error;
      }
      if (head === null) {
        if (resendable()) throw new StaleConnection();
        throw new Http1ProtocolError("the upstream closed the connection without answering");
      }
      const { framing, keepAlive } = framingOf(head, method);
      return new Http1Response(head, connection, framing, keepAlive, done);
    } catch (error) {
      done(false);
      throw error;
    }
  }

  #release(connection: Http1Connection): void {
    if (this.#closed) return connection.close();
    let list = this.#idle.get(connection.key);
    if (list === undefined) this.#idle.set(connection.key, list = []);
    if (list.length >= this.#maxIdlePerHost) return connection.close();
    connection.idleSince = Date.now();
    list.push(connection);
  }
}

/** A reused connection failed before any response byte: the request may be sent again on a new one. */
class StaleConnection extends Error {}

/** Sends plain-http URLs through `agent` and everything else (https) through the global `fetch`. */
export function routedUpstreamFetch(agent: Http1Agent): UpstreamFetch {
  return (url, init) => url.startsWith("http:") ? agent.fetch(url, init) : fetch(url, init);
}
