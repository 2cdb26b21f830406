/**
 * `deno task serve`: starts main.ts with least privilege. It reads the configuration and the policy,
 * then runs the server with network access limited to its listen address and the provider hosts, write
 * access limited to the artifacts folder, and only the environment variables it uses.
 *
 * To the user the launcher and the server are one process: SIGINT and SIGTERM are passed on and the
 * server's exit code is the launcher's. The server watches the pipe on its stdin and stops when the
 * launcher is gone, however it ended; the launcher stops the server when its own parent (`deno task`)
 * is gone, which `deno task` killed with SIGKILL cannot pass on.
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { ollamaNetEntry } from "../lib/config/mod.ts";
import { loadPolicy } from "../lib/contract/mod.ts";
import { parseDatabaseUrl } from "../lib/fleet/pg.ts";
import { REDIS_CLIENT_ENV_NAMES } from "../lib/fleet/redis.ts";
import {
  configFromEnv,
  exitCannotStart,
  listenEntry,
  policySecretEnvNames,
  readRouterEnv,
  ROUTER_ENV_NAMES,
} from "../lib/http/mod.ts";

/**
 * Folders of the modules that worker threads load at run time. Deno checks read permission for a
 * worker's whole import graph (the main module's graph needs none), so each folder that graph touches is
 * listed; tests/http/permissions_test.ts compares this list with `deno info --json` of every worker.
 */
export const WORKER_MODULE_DIRS: string[] = [fileURLToPath(new URL("../lib/edr/", import.meta.url))];

/** The `deno run` permission flags for a configuration: what the server may reach, read and write. */
export function serverPermissionFlags(
  config: ReturnType<typeof configFromEnv>,
  extraEnv: string[],
): string[] {
  const hostOf = (url: string) => new URL(url).host;
  // Every local host OLLAMA_HOST lists, each as host:port.
  const net = new Set<string>([
    listenEntry(config.host, config.port),
    ...config.ollamaUrls.map(ollamaNetEntry),
  ]);
  if (config.openaiApiKey) net.add(hostOf(config.openaiBaseUrl));
  if (config.anthropicApiKey) net.add(hostOf(config.anthropicBaseUrl));
  // The PostgreSQL client reads PGAPPNAME whatever its options say (lib/fleet/pg_connect.ts).
  const databaseEnv = config.databaseUrl ? ["PGAPPNAME"] : [];
  if (config.databaseUrl) net.add(parseDatabaseUrl(config.databaseUrl).netEntry);
  if (config.redis) net.add(config.redis.hostPort);
  const redisEnv = config.redis ? REDIS_CLIENT_ENV_NAMES : [];
  const artifacts = resolve(config.artifactsDir);
  const read = [
    artifacts,
    ...WORKER_MODULE_DIRS,
    // The EDR explorer's page (/ui) is served from the repository's ui/ folder.
    fileURLToPath(new URL("../ui/", import.meta.url)),
    ...(config.policyPath ? [resolve(config.policyPath)] : []),
  ];
  return [
    `--allow-net=${[...net].join(",")}`,
    `--allow-read=${read.join(",")}`,
    `--allow-write=${artifacts}`,
    `--allow-env=${[...ROUTER_ENV_NAMES, ...databaseEnv, ...redisEnv, ...extraEnv].join(",")}`,
    "--allow-sys=systemMemoryInfo",
  ];
}

// The listen address's --allow-net entry, as the permission tests check it beside the flags.
export { listenEntry };

/** Deno opens paths under these only with --allow-all, which the launcher never grants. */
const ALL_ACCESS_ONLY = ["/dev", "/proc", "/sys"];

/** Why the artifacts folder cannot work under scoped permissions, or null when it can. */
function artifactsDirProblem(artifactsDir: string): string | null {
  const path = resolve(artifactsDir);
  const root = ALL_ACCESS_ONLY.find((r) => path === r || path.startsWith(`${r}/`));
  if (!root) return null;
  return `HI_ARTIFACTS_DIR ${path} is under ${root}, which Deno opens only with --allow-all; ` +
    "choose a folder elsewhere (for a RAM disk, mount a tmpfs outside /dev)";
}

/** The server's permission flags, or the reason it cannot start, said once without a stack trace. */
async function launchFlags(): Promise<string[]> {
  try {
    const config = configFromEnv(readRouterEnv());
    const problem = artifactsDirProblem(config.artifactsDir);
    if (problem) throw new Error(problem);
    const policy = await loadPolicy(config.policyPath);
    return serverPermissionFlags(config, policySecretEnvNames(policy));
  } catch (error) {
    exitCannotStart(error);
  }
}

const USAGE = `usage: deno task serve [--help]

Runs the router (main.ts) with least privilege: network only to its listen address and the provider hosts,
write only under HI_ARTIFACTS_DIR. Ctrl-C, SIGTERM or killing the task stops the server with it.
Configuration is read from the environment (docs/configuration.md):
  HI_HOST, HI_PORT          listen address and port (default 127.0.0.1:8088; HI_PORT=0 picks a free one)
  HI_ARTIFACTS_DIR          where EDRs, logs and leases are written (default ./artifacts)
  HI_POLICY                 server policy file (JSON); the built-in policy applies without it
  OLLAMA_HOST               local Ollama (default 127.0.0.1:11434); several hosts separated by commas
  ANTHROPIC_API_KEY, OPENAI_API_KEY      enable a cloud fallback
  ANTHROPIC_BASE_URL, OPENAI_BASE_URL    cloud endpoints (defaults: the vendors' APIs)
  HI_LOG                    request log lines on stdout: debug, info (default), warn, error, off
  OTEL_DENO=true            OpenTelemetry traces, sent where OTEL_EXPORTER_OTLP_ENDPOINT says
  HI_DATABASE_URL           postgres://user:password@host:port/db: ship every EDR to PostgreSQL too
  HI_REPLICA_ID             this router's id in the database (default: made once, kept in the artifacts)
  HI_REDIS_URL              redis://[:password@]host:port: share leases and heavy slots between replicas
  HI_UPSTREAM_CLIENT        http1 (default) or fetch: how plain-http upstreams such as Ollama are called
Exit codes: the server's own (0 after a clean stop), 1 when it cannot start, 64 for a usage error.`;

/**
 * Checks the arguments of a command whose only option is `--help`: prints `usage` to stdout and exits 0
 * for `--help` or `-h`, and exits 64 with the usage on stderr for any other argument.
 */
function exitOnHelpOrStrayArgs(args: string[], usage: string): void {
  const { tokens } = parseArgs({
    args,
    strict: false,
    allowPositionals: true,
    tokens: true,
    options: { help: { type: "boolean", short: "h" } },
  });
  let help = false;
  for (const token of tokens) {
    if (token.kind === "option-terminator") continue;
    if (token.kind === "option" && token.name === "help" && token.value === undefined) {
      help = true;
      continue;
    }
    const stray = token.kind === "positional"
      ? token.value
      : token.inlineValue
      ? `${token.rawName}=${token.value}`
      : token.rawName;
    console.error(`error: unexpected argument "${stray}"; the only option is --help`);
    console.error(usage);
    Deno.exit(64);
  }
  if (help) {
    console.log(usage);
    Deno.exit(0);
  }
}

/** How often the launcher checks that its parent is still there; a changed parent pid means it is gone. */
const PARENT_CHECK_MS = 500;

if (import.meta.main) {
  exitOnHelpOrStrayArgs(Deno.args, USAGE);
  const flags = await launchFlags();
  const main = new URL("../main.ts", import.meta.url).pathname;
  // The pipe on the server's stdin is never written and closes only when this process ends, however
  // it ends (even SIGKILL): the server reads end-of-file and shuts down as on SIGTERM.
  const child = new Deno.Command("deno", {
    args: ["run", ...flags, main, "--exit-with-stdin"],
    stdin: "piped",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  const stopServer = (signal: Deno.Signal) => {
    try {
      child.kill(signal);
    } catch {
      // The server has already exited; its status ends this process below.
    }
  };
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => stopServer(signal));
  }
  // `deno task` passes SIGINT and SIGTERM on, but killed with SIGKILL it leaves this process behind,
  // adopted by another parent: stop the server then. Deno.ppid is read afresh at each access.
  const parent = Deno.ppid;
  const parentCheck = setInterval(() => {
    if (Deno.ppid === parent) return;
    clearInterval(parentCheck);
    stopServer("SIGTERM");
  }, PARENT_CHECK_MS);
  Deno.unrefTimer(parentCheck);
  const status = await child.status;
  Deno.exit(status.code);
}
