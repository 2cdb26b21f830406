/** What the fleet tests' real servers (redis-server, PostgreSQL) have in common. */

/** A server a test started on a free port of 127.0.0.1 in a temp folder. */
export interface TestServer {
  /** The URL a router is given (`HI_REDIS_URL`, `HI_DATABASE_URL`), with its credentials. */
  url: string;
  port: number;
  /** With `tls`: the PEM file of the private CA that signed the server's certificate. */
  caFile: string | null;
  /** Stops the server and waits for it to exit; `start()` brings it back on the same port. */
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it if running and removes the temp folder. */
  close(): Promise<void>;
}

/** A port nobody listens on now. */
export function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}
