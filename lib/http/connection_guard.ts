/**
 * The router's listener, with bounds `Deno.serve` does not offer. `Deno.serve` (Deno 2.9) has no
 * connection cap and no header or keep-alive timeout: idle TCP connections are held forever, and its
 * accept loop ends the process with an uncaught "Too many open files" once they use up the fd limit.
 * Here the router accepts connections itself and serves each with Deno's own per-connection HTTP
 * server, so it can:
 *
 * - cap open connections (`limits.max_connections`): a connection over the cap makes room by closing the
 *   oldest connection that has no request in flight, or is closed itself when every one is busy;
 * - close a connection that sends no complete request head within `limits.header_timeout_ms` of being
 *   accepted, or no new request within `limits.keep_alive_timeout_ms` of its last answer;
 * - survive an accept error: "Too many open files" is logged (at most once per burst), the oldest idle
 *   connection is closed to free a descriptor, and accepting resumes.
 */
import { type Deadline, deadlineAfter } from "../providers/mod.ts";

/** Bounds for `serveGuarded`. */
export interface ConnectionLimits {
  /** Most connections open at once. */
  maxConnections: number;
  /** A new connection must deliver a complete request head within this time. */
  headerTimeoutMs: number;
  /** A connection with no request in flight is closed after this time. */
  keepAliveTimeoutMs: number;
}

/** Options for `serveGuarded`. */
export interface GuardedServeOptions extends ConnectionLimits {
  hostname: string;
  port: number;
  /** Writes one operational log line. */
  log: (line: string) => void;
}

/** A running guarded listener. */
export interface GuardedServer {
  /** The address bound. */
  addr: Deno.NetAddr;
  /** Connections open now. */
  readonly openConnections: number;
  /** Stops accepting, lets in-flight requests finish, and closes every connection. */
  shutdown(): Promise<void>;
}

type Handler = (request: Request) => Response | Promise<Response>;
type ServeOnConnection = (
  conn: Deno.Conn,
  signal: AbortSignal,
  handler: (request: Request, info: Deno.ServeHandlerInfo) => Response | Promise<Response>,
  onError: (error: unknown) => Response,
  onListen: () => void,
) => { finished: Promise<void>; shutdown(): Promise<void> };

/** Deno's per-connection HTTP server (what `Deno.serve` runs for each connection), when this Deno has it. */
function serveOnConnection(): ServeOnConnection | null {
  const internals = (Deno as unknown as Record<symbol, Record<string, unknown> | undefined>)[
    (Deno as unknown as { internal: symbol }).internal
  ];
  const fn = internals?.serveHttpOnConnection;
  return typeof fn === "function" ? fn as ServeOnConnection : null;
}

/** How long a failing accept loop waits for a connection to close before it tries again. */
const ACCEPT_RETRY_MS = 50;
/** A repeated accept error is logged again only after this long. */
const ACCEPT_LOG_EVERY_MS = 10_000;

/**
 * Given to Deno's per-connection server, which would cancel the connection when it aborts; never aborted,
 * because cancelling a connection that has just ended throws from inside the abort event, uncaught.
 * Connections are closed with their `shutdown()`, which closes an idle or half-read connection at once.
 */
const NEVER = new AbortController().signal;

class Connection {
  /** Requests whose answer has not been delivered yet. */
  active = 0;
  /** Whether a request ever came: the first one is bound by the header timeout, later ones by keep-alive. */
  served = false;
  /** When the connection last had nothing in flight. */
  idleSince = performance.now();
  /** The pending timeout check, if any. */
  check: Deadline | null = null;
  finished: Promise<void> = Promise.resolve();
  shutdown: () => Promise<void> = () => Promise.resolve();
}

/**
 * Serves `handler` on `hostname:port` within `limits`. Falls back to plain `Deno.serve` (and logs that
 * the bounds are off) on a Deno without per-connection serving.
 */
export function serveGuarded(options: GuardedServeOptions, handler: Handler): GuardedServer {
  const onConnection = serveOnConnection();
  if (onConnection === null) {
    options.log(
      "connection limits are off: this Deno cannot serve connections one by one; run the pinned Deno 2.9",
    );
    const server = Deno.serve(
      { hostname: options.hostname, port: options.port, onListen: () => {} },
      handler,
    );
    return { addr: server.addr, openConnections: 0, shutdown: () => server.shutdown() };
  }
  return new GuardedListener(options, handler, onConnection);
}

class GuardedListener implements GuardedServer {
  readonly addr: Deno.NetAddr;
  #listener: Deno.Listener<Deno.TcpConn, Deno.NetAddr>;
  #options: GuardedServeOptions;
  #handler: Handler;
  #onConnection: ServeOnConnection;
  /** Open connections in accept order, so the first idle one found is the oldest. */
  #open = new Set<Connection>();
  #closing = false;
  #closed: PromiseWithResolvers<void> | null = null;
  #acceptLoop: Promise<void>;
  #lastAcceptLog = -Infinity;
  #acceptErrors = 0;
  #lastShedLog = -Infinity;
  #shed = 0;

  constructor(options: GuardedServeOptions, handler: Handler, onConnection: ServeOnConnection) {
    this.#options = options;
    this.#handler = handler;
    this.#onConnection = onConnection;
    this.#listener = Deno.listen({ hostname: options.hostname, port: options.port });
    this.addr = this.#listener.addr;
    this.#acceptLoop = this.#accept();
  }

  get openConnections(): number {
    return this.#open.size;
  }

  async #accept(): Promise<void> {
    while (!this.#closing) {
      let conn: Deno.TcpConn;
      try {
        conn = await this.#listener.accept();
      } catch (error) {
        if (this.#closing || error instanceof Deno.errors.BadResource) return;
        await this.#acceptFailed(error);
        continue;
      }
      if (this.#open.size >= this.#options.maxConnections && !this.#evictIdle()) {
        this.#noteShed();
        try {
          conn.close();
        } catch { /* already closed by the peer */ }
        continue;
      }
      this.#serve(conn);
    }
  }

  /** Logs an accept error once per burst, frees a descriptor if it can, and waits a moment before retrying. */
  async #acceptFailed(error: unknown): Promise<void> {
    this.#acceptErrors++;
    const now = performance.now();
    if (now - this.#lastAcceptLog >= ACCEPT_LOG_EVERY_MS) {
      const message = error instanceof Error ? error.message : String(error);
      const lowFds = /too many open files/i.test(message)
        ? "; lower limits.max_connections or raise the process's open-file limit (ulimit -n)"
        : "";
      this.#options.log(
        `accept failed ${this.#acceptErrors} time(s) (${message}) with ${this.#open.size} connections open; ` +
          `still serving${lowFds}`,
      );
      this.#lastAcceptLog = now;
      this.#acceptErrors = 0;
    }
    if (this.#evictIdle()) return;
    // Every connection is busy: wait for one to end, or a moment, instead of spinning on the same error.
    const freed = Promise.withResolvers<void>();
    const deadline = deadlineAfter(ACCEPT_RETRY_MS, freed.resolve, { keepAlive: false });
    this.#closed = freed;
    await freed.promise;
    deadline.cancel();
    this.#closed = null;
  }

  #noteShed(): void {
    this.#shed++;
    const now = performance.now();
    if (now - this.#lastShedLog < ACCEPT_LOG_EVERY_MS) return;
    this.#options.log(
      `${this.#shed} connection(s) refused: all ${this.#open.size} open connections (limits.max_connections) ` +
        "have requests in flight",
    );
    this.#lastShedLog = now;
    this.#shed = 0;
  }

  /** Closes the oldest connection with no request in flight; false when every connection is busy. */
  #evictIdle(): boolean {
    for (const connection of this.#open) {
      if (connection.active > 0) continue;
      this.#drop(connection);
      return true;
    }
    return false;
  }

  #drop(connection: Connection): void {
    if (!this.#open.delete(connection)) return;
    connection.check?.cancel();
    connection.check = null;
    connection.shutdown().catch(() => {});
    this.#closed?.resolve();
  }

  #serve(conn: Deno.TcpConn): void {
    const connection = new Connection();
    this.#open.add(connection);
    const handler = (request: Request, info: Deno.ServeHandlerInfo) => {
      connection.active++;
      connection.served = true;
      const settled = () => {
        if (--connection.active > 0) return;
        connection.idleSince = performance.now();
        this.#arm(connection, this.#options.keepAliveTimeoutMs);
      };
      info.completed.then(settled, settled);
      return this.#handler(request);
    };
    const onError = () => new Response("internal error", { status: 500 });
    let served;
    try {
      served = this.#onConnection(conn, NEVER, handler, onError, () => {});
    } catch (error) {
      this.#open.delete(connection);
      try {
        conn.close();
      } catch { /* already closed */ }
      this.#options.log(`a connection could not be served (${(error as Error).message}); it was closed`);
      return;
    }
    connection.shutdown = served.shutdown;
    connection.finished = served.finished.catch(() => {}).finally(() => this.#drop(connection));
    this.#arm(connection, this.#options.headerTimeoutMs);
  }

  /** Checks `connection` after `ms`; one check is pending per connection at most. */
  #arm(connection: Connection, ms: number): void {
    if (connection.check !== null || !this.#open.has(connection)) return;
    connection.check = deadlineAfter(ms, () => {
      connection.check = null;
      if (connection.active > 0 || !this.#open.has(connection)) return;
      const limit = connection.served ? this.#options.keepAliveTimeoutMs : this.#options.headerTimeoutMs;
      const left = limit - (performance.now() - connection.idleSince);
      if (left <= 0) this.#drop(connection);
      else this.#arm(connection, left);
    }, { keepAlive: false });
  }

  async shutdown(): Promise<void> {
    if (!this.#closing) {
      this.#closing = true;
      try {
        this.#listener.close();
      } catch { /* already closed */ }
      this.#closed?.resolve();
    }
    await this.#acceptLoop;
    const open = [...this.#open];
    // Idle connections go now; busy ones finish their answers first.
    for (const connection of open) if (connection.active === 0) this.#drop(connection);
    await Promise.all(open.map((c) => c.shutdown().catch(() => {})));
    await Promise.all(open.map((c) => c.finished));
  }
}
