/**
 * One Redis connection per router process (plus one for pub/sub), shared by the lease store and the heavy
 * slots. Commands never queue while the connection is down: they fail at once, so a request that needs
 * Redis fails closed instead of hanging, and the client reconnects in the background.
 */
import { createHash } from "node:crypto";
import { createClient } from "@redis/client";
import { withoutUrlPassword } from "./url_password.ts";

/** How long one command may take before it fails (a hung Redis fails requests closed, not slowly). */
export const REDIS_COMMAND_TIMEOUT_MS = 2_000;
/** How long the first connection at startup may take. */
const CONNECT_TIMEOUT_MS = 3_000;
/** Longest pause between reconnection attempts once the router runs. */
const MAX_RECONNECT_DELAY_MS = 500;

/**
 * Environment variables the Redis client reads by name (they only switch its debug output); the launcher
 * grants them alongside HI_REDIS_URL, as the client stops working when it may not read them.
 */
export const REDIS_CLIENT_ENV_NAMES = ["REDIS_DEBUG_MAINTENANCE", "REDIS_EMIT_DIAGNOSTICS"] as const;

/** A Redis command reply as the scripts here return them. */
export type RedisReply = string | number | null | RedisReply[];

/** The parts of a parsed `HI_REDIS_URL` the router needs. */
export interface RedisTarget {
  /** The URL as given (may carry a password: never log it). */
  url: string;
  /** `host:port` for --allow-net. */
  hostPort: string;
  /** The URL without user or password, safe for logs: `redis://host:port/db`. */
  display: string;
}

/** Parses `HI_REDIS_URL`: redis:// or rediss://, default port 6379; throws a message naming the problem. */
export function parseRedisUrl(value: string): RedisTarget {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new Error("HI_REDIS_URL is not a URL; use redis://[:password@]host:port[/db] or rediss://…");
  }
  if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
    throw new Error(`HI_REDIS_URL must start with redis:// or rediss://, not ${url.protocol}//`);
  }
  if (url.hostname === "") throw new Error("HI_REDIS_URL names no host; use redis://host:port");
  const db = url.pathname.replace(/^\//, "");
  if (db !== "" && !/^\d+$/.test(db)) {
    throw new Error("HI_REDIS_URL's path must be a database number (redis://host:port/0)");
  }
  const port = url.port || "6379";
  const hostPort = `${url.hostname}:${port}`;
  return { url: value, hostPort, display: `${url.protocol}//${hostPort}${db ? `/${db}` : ""}` };
}

function makeClient(target: RedisTarget) {
  let connectedOnce = false;
  const client = createClient({
    url: target.url,
    disableOfflineQueue: true,
    commandOptions: { timeout: REDIS_COMMAND_TIMEOUT_MS },
    socket: {
      connectTimeout: CONNECT_TIMEOUT_MS,
      // At startup a failure is final (the router says so and exits); later, retry for ever.
      reconnectStrategy: (retries: number, cause: Error) =>
        connectedOnce ? Math.min(50 * 2 ** Math.min(retries, 4), MAX_RECONNECT_DELAY_MS) : cause,
    },
  });
  client.on("ready", () => connectedOnce = true);
  return client;
}

type Client = ReturnType<typeof makeClient>;

/** A connected Redis: a command connection, a subscriber connection, and script helpers. */
export class RedisConnection {
  readonly target: RedisTarget;
  #client: Client;
  #subscriber: Client;
  #log: (line: string) => void;
  /** "starting" until both connections are up: a failure before that is the startup error, said once. */
  #state: "starting" | "up" | "down" | "closed" = "starting";

  private constructor(
    target: RedisTarget,
    client: Client,
    subscriber: Client,
    log: (line: string) => void,
  ) {
    this.target = target;
    this.#client = client;
    this.#subscriber = subscriber;
    this.#log = log;
  }

  /**
   * Connects both connections; rejects with a message naming the server (never its password) when
   * Redis cannot be reached or refuses the credentials. Later outages are reconnected in the background.
   */
  static async connect(target: RedisTarget, log: (line: string) => void): Promise<RedisConnection> {
    const client = makeClient(target);
    const subscriber = makeClient(target);
    const connection = new RedisConnection(target, client, subscriber, log);
    client.on("error", (error: Error) => connection.#down(error));
    subscriber.on("error", () => {});
    client.on("ready", () => connection.#ready());
    try {
      await client.connect();
      await subscriber.connect();
    } catch (error) {
      await client.destroy?.();
      await subscriber.destroy?.();
      const reason = error instanceof Error ? withoutUrlPassword(error.message, target.url) : String(error);
      throw new Error(`Redis at ${target.display} (HI_REDIS_URL) cannot be used: ${reason}`);
    }
    connection.#state = "up";
    return connection;
  }

  #down(error: Error): void {
    if (this.#state !== "up") return;
    this.#state = "down";
    const reason = withoutUrlPassword(error.message, this.target.url);
    this.#log(`redis ${this.target.display} unreachable (${reason}); reconnecting`);
  }

  #ready(): void {
    if (this.#state !== "down") return;
    this.#state = "up";
    this.#log(`redis ${this.target.display} reachable again`);
  }

  /** Sends one command; rejects at once while the connection is down. */
  async command(args: string[]): Promise<RedisReply> {
    return await this.#client.sendCommand(args) as RedisReply;
  }

  /** Runs a Lua script by its sha1, loading it first when Redis does not know it (after a restart). */
  async script(script: RedisScript, keys: string[], args: (string | number)[]): Promise<RedisReply> {
    const tail = [String(keys.length), ...keys, ...args.map(String)];
    try {
      return await this.command(["EVALSHA", script.sha, ...tail]);
    } catch (error) {
      if (!(error instanceof Error) || !error.message.startsWith("NOSCRIPT")) throw error;
      return await this.command(["EVAL", script.source, ...tail]);
    }
  }

  /** Calls `listener` with each message published on `channel` (resubscribed after reconnects). */
  async subscribe(channel: string, listener: (message: string) => void): Promise<void> {
    await this.#subscriber.subscribe(channel, listener);
  }

  /** Publishes a message (errors are the caller's). */
  async publish(channel: string, message: string): Promise<void> {
    await this.command(["PUBLISH", channel, message]);
  }

  /** Closes both connections (pending commands finish first). */
  async close(): Promise<void> {
    if (this.#state === "closed") return;
    this.#state = "closed";
    await Promise.allSettled([this.#client.close(), this.#subscriber.close()]);
  }
}

/** A Lua script with its sha1, for EVALSHA. */
export interface RedisScript {
  source: string;
  sha: string;
}

/** Wraps Lua source as a script. */
export function redisScript(source: string): RedisScript {
  return { source, sha: createHash("sha1").update(source).digest("hex") };
}
