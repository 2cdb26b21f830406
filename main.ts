/**
 * hybrid-inference: the router's single entrypoint. Wiring only: read the configuration, start the
 * server, say once what is missing, and shut down cleanly on a signal. With `--exit-with-stdin` (given by
 * cli/serve.ts) it also shuts down when its stdin reaches end-of-file, which is when the launcher is gone.
 */
import { parseArgs } from "node:util";
import { unusableIssuers } from "./lib/authority/mod.ts";
import { loadPolicy } from "./lib/contract/mod.ts";
import {
  configFromEnv,
  exitCannotStart,
  policySecretEnvNames,
  readRouterEnv,
  startServer,
} from "./lib/http/mod.ts";

/** Reads only the issuer secret variables the policy names, so no other variable is ever touched. */
function secretLookup(names: string[]): Record<string, string | undefined> {
  return Object.fromEntries(names.map((name) => [name, Deno.env.get(name)]));
}

/** Configuration, policy and artifacts-folder problems end the process with their message, not a stack. */
async function start() {
  try {
    const config = configFromEnv(readRouterEnv());
    const policy = await loadPolicy(config.policyPath);
    const secrets = secretLookup(policySecretEnvNames(policy));
    const server = await startServer(config, { policy, secrets });
    return { config, policy, server, secrets };
  } catch (error) {
    exitCannotStart(error);
  }
}

/** Reads the flags: only `--exit-with-stdin`; anything else ends the process with exit code 64. */
function parseFlags(args: string[]): { exitWithStdin: boolean } {
  try {
    const { values } = parseArgs({ args, strict: true, options: { "exit-with-stdin": { type: "boolean" } } });
    return { exitWithStdin: values["exit-with-stdin"] === true };
  } catch {
    console.error(
      `hybrid-inference cannot start: unexpected arguments ${JSON.stringify(args)}; ` +
        "configure it with environment variables (deno task serve --help)",
    );
    Deno.exit(64);
  }
}

/** Resolves when stdin reaches end-of-file (or fails to read), which is when the launcher is gone. */
async function stdinClosed(): Promise<void> {
  try {
    for await (const _ of Deno.stdin.readable) {
      // The launcher never writes; whatever comes is dropped.
    }
  } catch {
    // A broken pipe means the same as end-of-file.
  }
}

if (import.meta.main) {
  const { exitWithStdin } = parseFlags(Deno.args);
  const { config, policy, server, secrets } = await start();
  // One shutdown for SIGINT, SIGTERM and the end of stdin; a second request while it runs is a no-op.
  let stopping = false;
  const stop = async () => {
    if (stopping) return;
    stopping = true;
    try {
      await server.close();
    } catch (error) {
      console.error(`hybrid-inference stopped: ${error instanceof Error ? error.message : String(error)}`);
      Deno.exit(1);
    }
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
  if (exitWithStdin) stdinClosed().then(stop);
  console.log(
    `hybrid-inference listening on ${server.url} (policy ${policy.policy_version}, artifacts ${config.artifactsDir})`,
  );
  // The server starts without an issuer's secret (other issuers may still verify), so say it once here.
  for (const issuer of unusableIssuers(policy.authority, secrets)) {
    const env = policy.authority.issuers.find((i) => i.id === issuer)?.hmac_secret_env;
    console.log(
      `authority issuer "${issuer}" cannot verify anything: its secret variable ${env} is not set, so every ` +
        `block it signs is refused; set ${env} and restart`,
    );
  }
  await server.firstProbe;
  const unfit = server.hosts.every((h) => h.health.snapshot().state === "unfit");
  const clouds = [config.anthropicApiKey ? "anthropic" : null, config.openaiApiKey ? "openai" : null].filter(
    Boolean,
  );
  if (unfit && clouds.length === 0 && !stopping) {
    console.log(
      `no provider is usable yet: Ollama is not reachable at ${
        config.ollamaUrls.join(", ")
      } and no cloud key is set. ` +
        "Start Ollama (or set OLLAMA_HOST), or set ANTHROPIC_API_KEY / OPENAI_API_KEY; requests get 503 until then.",
    );
  }
}
