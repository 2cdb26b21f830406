/**
 * `deno task serve`: starts main.ts with least privilege. It reads the configuration and the policy,
 * then runs the server with network access limited to its listen address and the provider hosts, write
 * access limited to the artifacts folder, and only the environment variables it uses.
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { issuerSecretEnvNames } from "../lib/authority/mod.ts";
import { loadPolicy } from "../lib/contract/mod.ts";
import { configFromEnv, exitCannotStart, readRouterEnv, ROUTER_ENV_NAMES } from "../lib/http/mod.ts";

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
  const net = new Set<string>([`${config.host}:${config.port}`, hostOf(config.ollamaUrl)]);
  if (config.openaiApiKey) net.add(hostOf(config.openaiBaseUrl));
  if (config.anthropicApiKey) net.add(hostOf(config.anthropicBaseUrl));
  const artifacts = resolve(config.artifactsDir);
  const read = [artifacts, ...WORKER_MODULE_DIRS, ...(config.policyPath ? [resolve(config.policyPath)] : [])];
  return [
    `--allow-net=${[...net].join(",")}`,
    `--allow-read=${read.join(",")}`,
    `--allow-write=${artifacts}`,
    `--allow-env=${[...ROUTER_ENV_NAMES, ...extraEnv].join(",")}`,
    "--allow-sys=systemMemoryInfo",
  ];
}

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
    return serverPermissionFlags(config, issuerSecretEnvNames(policy.authority));
  } catch (error) {
    exitCannotStart(error);
  }
}

if (import.meta.main) {
  const flags = await launchFlags();
  const main = new URL("../main.ts", import.meta.url).pathname;
  const child = new Deno.Command("deno", {
    args: ["run", ...flags, main],
    stdin: "inherit",
    stdout: "inherit",
    stderr: "inherit",
  }).spawn();
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => child.kill(signal));
  }
  const status = await child.status;
  Deno.exit(status.code);
}
