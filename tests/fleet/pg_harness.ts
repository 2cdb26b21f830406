/**
 * A real PostgreSQL server for tests: `initdb` in a temp folder, `postgres` on a free port of 127.0.0.1
 * with its socket in that folder, one database created. As root (CI, this machine) the server runs as the
 * `postgres` user, which PostgreSQL requires. The binaries are found on PATH or under
 * /usr/lib/postgresql/<version>/bin, where Debian's `apt-get install -y postgresql` puts them.
 */

import { freePort, type TestServer } from "./test_server.ts";
import postgres from "postgres";
import { makeCertificates } from "./test_certificates.ts";

/** A running test PostgreSQL: `postgres://hi:<password>@127.0.0.1:<port>/hi`; stopped with a fast shutdown. */
export type TestPostgres = TestServer;

const PASSWORD = "s3cret-test-pw";

/** The folder holding initdb and postgres, or null when PostgreSQL is not installed. */
export function postgresBinDir(): string | null {
  const candidates: string[] = [];
  for (const dir of (Deno.env.get("PATH") ?? "").split(":")) if (dir) candidates.push(dir);
  try {
    const versions = [...Deno.readDirSync("/usr/lib/postgresql")].map((e) => e.name)
      .filter((n) => /^\d+$/.test(n)).sort((a, b) => Number(b) - Number(a));
    for (const v of versions) candidates.push(`/usr/lib/postgresql/${v}/bin`);
  } catch { /* not installed there */ }
  for (const dir of candidates) {
    try {
      // /usr/local/bin may hold symlinks to some of them only: use the folder they really live in.
      const initdb = Deno.realPathSync(`${dir}/initdb`);
      const real = initdb.slice(0, initdb.lastIndexOf("/"));
      if (Deno.statSync(`${real}/postgres`).isFile && Deno.statSync(`${real}/pg_ctl`).isFile) return real;
    } catch { /* next */ }
  }
  return null;
}

/** A test may skip only when PostgreSQL is absent and CI is not set (in CI the fleet tests must run). */
export function postgresSkipReason(): string | null {
  if (postgresBinDir() !== null) return null;
  if (Deno.env.get("CI")) throw new Error("PostgreSQL (initdb) not found in CI: .ci/run must install it");
  return "PostgreSQL is not installed (apt-get install -y postgresql); skipping";
}

const isRoot = Deno.uid() === 0;

async function run(cmd: string[], env: Record<string, string> = {}): Promise<string> {
  const argv = isRoot ? ["runuser", "-u", "postgres", "--", ...cmd] : cmd;
  const out = await new Deno.Command(argv[0], { args: argv.slice(1), env, stdout: "piped", stderr: "piped" })
    .output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  if (!out.success) throw new Error(`${cmd.join(" ")} failed (${out.code}): ${text}`);
  return text;
}

/**
 * Starts a fresh PostgreSQL with a database `hi` owned by the password user `hi`; with `tls`, it also
 * accepts TLS (`ssl=on`) with a certificate from a private CA made for it (`caFile`).
 */
export async function startPostgres(options: { tls?: boolean } = {}): Promise<TestPostgres> {
  const bin = postgresBinDir();
  if (bin === null) throw new Error("PostgreSQL is not installed (apt-get install -y postgresql)");
  const dir = await Deno.makeTempDir({ prefix: "hi-pg-" });
  await Deno.chmod(dir, 0o755);
  // PostgreSQL refuses a key file others can read.
  if (options.tls) {
    makeCertificates(dir);
    await Deno.chmod(`${dir}/server.key`, 0o600);
  }
  const tls = options.tls
    ? ` -c ssl=on -c ssl_cert_file=${dir}/server.pem -c ssl_key_file=${dir}/server.key`
    : "";
  const data = `${dir}/data`;
  const pwFile = `${dir}/pw`;
  await Deno.writeTextFile(pwFile, PASSWORD);
  if (isRoot) {
    await new Deno.Command("chown", { args: ["-R", "postgres:postgres", dir] }).output();
  }
  await run([
    `${bin}/initdb`,
    "-D",
    data,
    "-U",
    "hi",
    "--auth=scram-sha-256",
    `--pwfile=${pwFile}`,
    "-E",
    "UTF8",
    "--no-sync",
  ]);
  const port = freePort();
  let running = false;
  const pgCtl = (action: string[]) => run([`${bin}/pg_ctl`, "-D", data, ...action]);
  const start = async () => {
    await pgCtl([
      "-w",
      "-t",
      "30",
      "-l",
      `${dir}/log`,
      "-o",
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off${tls}`,
      "start",
    ]);
    running = true;
  };
  const stop = async () => {
    if (!running) return;
    await pgCtl(["-w", "-t", "30", "-m", "fast", "stop"]);
    running = false;
  };
  try {
    await start();
    const admin = postgres(`postgres://hi:${PASSWORD}@127.0.0.1:${port}/postgres`, {
      max: 1,
      onnotice: () => {},
    });
    try {
      await admin`CREATE DATABASE hi`;
    } finally {
      await admin.end();
    }
  } catch (error) {
    await stop().catch(() => {});
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    throw error;
  }
  return {
    url: `postgres://hi:${PASSWORD}@127.0.0.1:${port}/hi`,
    port,
    caFile: options.tls ? `${dir}/ca.pem` : null,
    stop,
    start,
    async close() {
      try {
        await stop();
      } finally {
        await Deno.remove(dir, { recursive: true }).catch(() => {});
      }
    },
  };
}

/** The secret in every test URL, to assert it never reaches a log. */
export const TEST_PG_PASSWORD = PASSWORD;
