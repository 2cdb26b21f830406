/**
 * A real `redis-server` for the fleet tests: started on a free port in a temp folder, without
 * persistence (`--save "" --appendonly no`), stopped (and restartable on the same port) by the test.
 * Without the binary a test skips with a message, except in CI (`CI` set), where it must run.
 */
import { createConnection } from "node:net";

/** Whether redis-server is installed; throws in CI when it is not (CI must run the fleet tests). */
export function redisAvailable(): boolean {
  const found =
    new Deno.Command("sh", { args: ["-c", "command -v redis-server"], stdout: "null", stderr: "null" })
      .outputSync().success;
  if (!found && Deno.env.get("CI")) {
    throw new Error(
      "redis-server is not installed, and CI must run the fleet tests: apt-get install -y redis-server",
    );
  }
  if (!found) console.warn("skipping: redis-server is not installed (apt-get install -y redis-server)");
  return found;
}

/** A running redis-server. */
export interface RedisServer {
  /** `redis://127.0.0.1:PORT` (with `:password@` when one was set). */
  url: string;
  port: number;
  /** Stops the server (SIGTERM, waits for exit); its data is gone (no persistence). */
  stop(): Promise<void>;
  /** Starts it again on the same port. */
  start(): Promise<void>;
  /** Stops it and removes the temp folder. */
  close(): Promise<void>;
}

/** A port nobody listens on now. */
function freePort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

/** Resolves once something accepts TCP connections on the port and answers PING; rejects after `ms`. */
async function waitForPing(port: number, password: string | undefined, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = createConnection({ host: "127.0.0.1", port });
      let data = "";
      socket.on("connect", () => {
        socket.write(password ? `AUTH ${password}\r\nPING\r\n` : "PING\r\n");
      });
      socket.on("data", (chunk) => {
        data += chunk.toString();
        if (data.includes("+PONG")) {
          socket.destroy();
          resolve(true);
        } else if (data.includes("-")) {
          socket.destroy();
          resolve(false);
        }
      });
      socket.on("error", () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) {
      throw new Error(`redis-server on port ${port} did not answer PING in ${ms} ms`);
    }
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
}

/** Starts redis-server on a free port in a fresh temp folder. */
export async function startRedisServer(options: { password?: string } = {}): Promise<RedisServer> {
  const dir = await Deno.makeTempDir({ prefix: "hi-redis-" });
  const port = freePort();
  let child: Deno.ChildProcess | null = null;
  const start = async () => {
    const args = [
      "--port",
      String(port),
      "--bind",
      "127.0.0.1",
      "--dir",
      dir,
      "--save",
      "",
      "--appendonly",
      "no",
    ];
    if (options.password) args.push("--requirepass", options.password);
    child = new Deno.Command("redis-server", { args, stdin: "null", stdout: "null", stderr: "null" }).spawn();
    await waitForPing(port, options.password);
  };
  const stop = async () => {
    if (!child) return;
    const running = child;
    child = null;
    try {
      running.kill("SIGTERM");
    } catch { /* already gone */ }
    await running.status;
  };
  await start();
  const auth = options.password ? `:${encodeURIComponent(options.password)}@` : "";
  return {
    url: `redis://${auth}127.0.0.1:${port}`,
    port,
    stop,
    start,
    async close() {
      await stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
