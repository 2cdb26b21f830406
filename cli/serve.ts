/**
 * `deno task serve`: starts main.ts with least privilege. It reads the configuration and the policy,
 * then runs the server with network access limited to its listen address and the provider hosts, write
 * access limited to the artifacts folder, and only the environment variables it uses.
 */
import { resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { loadPolicy } from "../lib/contract/mod.ts";
import { configFromEnv, readRouterEnv, ROUTER_ENV_NAMES } from "../lib/http/mod.ts";

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
  // The EDR writer materializes files from a worker thread, whose module must be readable.
  const worker = fileURLToPath(new URL("../lib/edr/materializer_worker.ts", import.meta.url));
  const read = [artifacts, worker, ...(config.policyPath ? [resolve(config.policyPath)] : [])];
  return [
    `--allow-net=${[...net].join(",")}`,
    `--allow-read=${read.join(",")}`,
    `--allow-write=${artifacts}`,
    `--allow-env=${[...ROUTER_ENV_NAMES, ...extraEnv].join(",")}`,
    "--allow-sys=systemMemoryInfo",
  ];
}

if (import.meta.main) {
  const config = configFromEnv(readRouterEnv());
  const policy = await loadPolicy(config.policyPath);
  const secretEnv = policy.authority.issuers.flatMap((i) => (i.hmac_secret_env ? [i.hmac_secret_env] : []));
  const flags = serverPermissionFlags(config, secretEnv);
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
