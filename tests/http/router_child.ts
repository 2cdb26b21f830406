/**
 * Child process for the router restart tests: starts the real router from the environment (`HI_PORT`,
 * `HI_ARTIFACTS_DIR`, `HI_POLICY`, `OLLAMA_HOST`, …) the way main.ts does, reads the issuer secrets the
 * policy names, probes local health, then prints its URL as the first line on stdout. SIGTERM closes it
 * cleanly (exit 0); the tests also SIGKILL it.
 */
import { loadPolicy } from "../../lib/contract/mod.ts";
import { configFromEnv, startServer } from "../../lib/http/mod.ts";

const config = configFromEnv(Deno.env.toObject());
const policy = await loadPolicy(config.policyPath);
const secretNames = policy.authority.issuers.flatMap((i) => (i.hmac_secret_env ? [i.hmac_secret_env] : []));
const secrets = Object.fromEntries(secretNames.map((name) => [name, Deno.env.get(name)]));
const server = await startServer(config, { policy, secrets });
await server.health.probeNow();
Deno.addSignalListener("SIGTERM", async () => {
  await server.close();
  Deno.exit(0);
});
console.log(server.url);
