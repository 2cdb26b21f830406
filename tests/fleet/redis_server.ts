/**
 * A real `redis-server` for the fleet tests, plain or TLS-only (with a certificate from a private CA made
 * by openssl): started on a free port in a temp folder, without persistence (`--save "" --appendonly no`),
 * stopped (and restartable on the same port) by the test. Without the binary a test skips with a message,
 * except in CI (`CI` set), where it must run.
 */
import { freePort, type TestServer } from "./test_server.ts";
import { createConnection } from "node:net";
import { connect as connectTls } from "node:tls";
import { makeCertificates } from "./test_certificates.ts";

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

/**
 * A running redis-server: `redis://127.0.0.1:PORT` (with `:password@` when one was set), `rediss://` with
 * TLS; once stopped its data is gone (no persistence).
 */
export type RedisServer = TestServer;

/**
 * Resolves once something accepts connections on the port and answers PING (over TLS trusting `ca` when
 * given); rejects after `ms`.
 */
async function waitForPing(port: number, password: string | undefined, ca: string | null, ms = 10_000) {
  const deadline = Date.now() + ms;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = ca === null
        ? createConnection({ host: "127.0.0.1", port })
        : connectTls({ host: "127.0.0.1", port, ca, servername: "localhost" });
      let data = "";
      socket.on(ca === null ? "connect" : "secureConnect", () => {
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

/**
 * Starts redis-server on a free port in a fresh temp folder; with `tls`, it listens only for TLS, with a
 * certificate from a private CA made for it (`caFile`).
 */
export async function startRedisServer(
  options: { password?: string; tls?: boolean } = {},
): Promise<RedisServer> {
  const dir = await Deno.makeTempDir({ prefix: "hi-redis-" });
  const port = freePort();
  if (options.tls) makeCertificates(dir);
  const ca = options.tls ? Deno.readTextFileSync(`${dir}/ca.pem`) : null;
  let child: Deno.ChildProcess | null = null;
  const start = async () => {
    const listen = options.tls
      ? [
        "--port",
        "0",
        "--tls-port",
        String(port),
        "--tls-cert-file",
        `${dir}/server.pem`,
        "--tls-key-file",
        `${dir}/server.key`,
        "--tls-ca-cert-file",
        `${dir}/ca.pem`,
        "--tls-auth-clients",
        "no",
      ]
      : ["--port", String(port)];
    const args = [
      ...listen,
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
    await waitForPing(port, options.password, ca);
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
    url: `${options.tls ? "rediss" : "redis"}://${auth}127.0.0.1:${port}`,
    port,
    caFile: options.tls ? `${dir}/ca.pem` : null,
    stop,
    start,
    async close() {
      await stop();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}
