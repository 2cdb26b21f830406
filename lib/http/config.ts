import { checkReplicaId, parseDatabaseUrl } from "../fleet/pg.ts";

/** Every environment variable the router reads (issuer secrets aside: the policy names those). */
export const ROUTER_ENV_NAMES = [
  "HI_HOST",
  "HI_PORT",
  "HI_ARTIFACTS_DIR",
  "HI_POLICY",
  "OLLAMA_HOST",
  "OPENAI_BASE_URL",
  "OPENAI_API_KEY",
  "ANTHROPIC_BASE_URL",
  "ANTHROPIC_API_KEY",
  "HI_DATABASE_URL",
  "HI_REPLICA_ID",
] as const;

/** Reads the router's variables (and only those) from the process environment. */
export function readRouterEnv(): Record<string, string | undefined> {
  return Object.fromEntries(ROUTER_ENV_NAMES.map((name) => [name, Deno.env.get(name)]));
}

/** The router's runtime configuration, read once from the environment (names in docs/configuration.md). */
export interface RouterConfig {
  host: string;
  port: number;
  artifactsDir: string;
  policyPath: string | undefined;
  ollamaUrl: string;
  openaiBaseUrl: string;
  openaiApiKey: string | undefined;
  anthropicBaseUrl: string;
  anthropicApiKey: string | undefined;
  /** PostgreSQL EDR store (`HI_DATABASE_URL`, may carry a password); records ship there when set. */
  databaseUrl: string | undefined;
  /** `HI_REPLICA_ID`; without it the id stored in the artifacts folder (see docs/fleet.md). */
  replicaId: string | undefined;
}

/** Accepts Ollama's own `OLLAMA_HOST` spellings: `host`, `host:port`, `http://host:port`. */
export function normalizeOllamaHost(value: string | undefined): string {
  const raw = (value ?? "").trim();
  if (raw === "") return "http://127.0.0.1:11434";
  const withScheme = /^https?:\/\//i.test(raw) ? raw : `http://${raw}`;
  const url = new URL(withScheme);
  if (url.hostname === "0.0.0.0") url.hostname = "127.0.0.1";
  if (!url.port && !/^https?:\/\/[^/]+:\d+/i.test(withScheme)) {
    url.port = url.protocol === "https:" ? "443" : "11434";
  }
  return url.origin;
}

/** Ends a process that cannot start with one line saying why (configuration, policy, listen address). */
export function exitCannotStart(error: unknown): never {
  console.error(`hybrid-inference cannot start: ${error instanceof Error ? error.message : String(error)}`);
  Deno.exit(1);
}

/** Reads the configuration from an environment lookup (`Deno.env.toObject()` in production). */
export function configFromEnv(env: Record<string, string | undefined>): RouterConfig {
  const port = Number(env.HI_PORT ?? "8088");
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new Error(`HI_PORT must be a port number from 0 to 65535, not ${env.HI_PORT}`);
  }
  const blankToUndefined = (v: string | undefined) => (v && v.trim() !== "" ? v.trim() : undefined);
  const databaseUrl = blankToUndefined(env.HI_DATABASE_URL);
  if (databaseUrl !== undefined) parseDatabaseUrl(databaseUrl);
  const replicaId = blankToUndefined(env.HI_REPLICA_ID);
  return {
    host: env.HI_HOST ?? "127.0.0.1",
    port,
    artifactsDir: env.HI_ARTIFACTS_DIR ?? "./artifacts",
    policyPath: blankToUndefined(env.HI_POLICY),
    ollamaUrl: normalizeOllamaHost(env.OLLAMA_HOST),
    openaiBaseUrl: (env.OPENAI_BASE_URL ?? "https://api.openai.com/v1").replace(/\/+$/, ""),
    openaiApiKey: blankToUndefined(env.OPENAI_API_KEY),
    anthropicBaseUrl: (env.ANTHROPIC_BASE_URL ?? "https://api.anthropic.com").replace(/\/+$/, ""),
    anthropicApiKey: blankToUndefined(env.ANTHROPIC_API_KEY),
    databaseUrl,
    replicaId: replicaId === undefined ? undefined : checkReplicaId(replicaId),
  };
}
