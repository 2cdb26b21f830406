/**
 * hybrid-inference: the router's single entrypoint. Wiring only: read the configuration, start the
 * server, say once what is missing, and shut down cleanly on a signal.
 */
import { issuerSecretEnvNames } from "./lib/authority/mod.ts";
import { loadPolicy } from "./lib/contract/mod.ts";
import { configFromEnv, exitCannotStart, readRouterEnv, startServer } from "./lib/http/mod.ts";

/** Reads only the issuer secret variables the policy names, so no other variable is ever touched. */
function secretLookup(names: string[]): Record<string, string | undefined> {
  return Object.fromEntries(names.map((name) => [name, Deno.env.get(name)]));
}

/** Configuration, policy and artifacts-folder problems end the process with their message, not a stack. */
async function start() {
  try {
    const config = configFromEnv(readRouterEnv());
    const policy = await loadPolicy(config.policyPath);
    const secrets = secretLookup(issuerSecretEnvNames(policy.authority));
    const server = await startServer(config, { policy, secrets });
    return { config, policy, server };
  } catch (error) {
    exitCannotStart(error);
  }
}

if (import.meta.main) {
  const { config, policy, server } = await start();
  console.log(
    `hybrid-inference listening on ${server.url} (policy ${policy.policy_version}, artifacts ${config.artifactsDir})`,
  );
  await server.health.probeNow();
  const local = server.health.snapshot();
  const clouds = [config.anthropicApiKey ? "anthropic" : null, config.openaiApiKey ? "openai" : null].filter(
    Boolean,
  );
  if (local.state === "unfit" && clouds.length === 0) {
    console.log(
      `no provider is usable yet: Ollama is not reachable at ${config.ollamaUrl} and no cloud key is set. ` +
        "Start Ollama (or set OLLAMA_HOST), or set ANTHROPIC_API_KEY / OPENAI_API_KEY; requests get 503 until then.",
    );
  }
  const stop = async () => {
    await server.close();
    Deno.exit(0);
  };
  Deno.addSignalListener("SIGINT", stop);
  Deno.addSignalListener("SIGTERM", stop);
}
