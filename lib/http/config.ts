import { normalizeOllamaHost, parseOllamaHosts } from "../config/mod.ts";
import { type LogLevel, parseLogLevel } from "./request_log.ts";

export { normalizeOllamaHost };
import { checkReplicaId, parseDatabaseUrl } from "../fleet/pg.ts";
import { parseRedisUrl, type RedisTarget } from "../fleet/redis.ts";
import { issuerSecretEnvNames } from "../authority/mod.ts";
import type { Policy } from "../contract/mod.ts";

/** Every environment variable the router reads (issuer secrets aside: the policy names those). */
export const ROUTER_ENV_NAMES = [
  "HI_HOST",
  "HI_PORT",
  "HI_ARTIFACTS_DIR",
  "HI_POLICY",
  "HI_LOG",
  "HI_UPSTREAM_CLIENT",
  "OLLAMA_HOST",
  "OPENAI_BASE_URL",
  "OPENAI_API_KEY",
  "ANTHROPIC_BASE_URL",
  "ANTHROPIC_API_KEY",
  "HI_DATABASE_URL",
  "HI_REPLICA_ID",
  "HI_REDIS_URL",
] as const;

/**
 * `host:port` with an IPv6 literal in brackets (`[::1]:8088`), as Deno's --allow-net and a URL write it:
 * the launcher's permission for the listen address, and the server's own URL.
 */
export function listenEntry(host: string, port: number): string {
  return host.includes(":") && !host.startsWith("[") ? `[${host}]:${port}` : `${host}:${port}`;
}

/**
 * The environment variables a policy names for its secrets: its issuers' keys and the checkpoint key. The
 * server reads them, and the launcher lets it read nothing else besides ROUTER_ENV_NAMES.
 */
export function policySecretEnvNames(policy: Policy): string[] {
  const checkpointEnv = policy.checkpoints.hmac_secret_env;
  return [...issuerSecretEnvNames(policy.authority), ...(checkpointEnv ? [checkpointEnv] : [])];
}

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
  /** The first local Ollama host (the only one unless `OLLAMA_HOST` lists several). */
  ollamaUrl: string;
  /** Every local Ollama host, in the order `OLLAMA_HOST` lists them (lib/config/ollama_host.ts). */
  ollamaUrls: string[];
  openaiBaseUrl: string;
  openaiApiKey: string | undefined;
  anthropicBaseUrl: string;
  anthropicApiKey: string | undefined;
  /** `HI_LOG`: which per-request log lines go to stdout. */
  logLevel: LogLevel;
  /** `HI_UPSTREAM_CLIENT`: how plain-http upstreams are called (docs/configuration.md). */
  upstreamClient: UpstreamClient;
  /** PostgreSQL EDR store (`HI_DATABASE_URL`, may carry a password); records ship there when set. */
  databaseUrl: string | undefined;
  /** `HI_REPLICA_ID`; without it the id stored in the artifacts folder (see docs/fleet.md). */
  replicaId: string | undefined;
  /** Redis shared by the replicas of a fleet (leases, heavy slots); none: files and this process. */
  redis: RedisTarget | undefined;
}

/** `http1`: plain-http upstreams go through lib/providers/http1_client.ts; `fetch`: everything through fetch. */
export type UpstreamClient = "http1" | "fetch";

function parseUpstreamClient(value: string | undefined): UpstreamClient {
  const text = (value ?? "").trim();
  if (text === "") return "http1";
  if (text === "http1" || text === "fetch") return text;
  throw new Error(`HI_UPSTREAM_CLIENT must be http1 or fetch, not ${JSON.stringify(text)}`);
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
  const ollamaUrls = parseOllamaHosts(env.OLLAMA_HOST);
  const blankToUndefined = (v: string | undefined) => (v && v.trim() !== "" ? v.trim() : undefined);
  const databaseUrl = blankToUndefined(env.HI_DATABASE_URL);
  if (databaseUrl !== undefined) parseDatabaseUrl(databaseUrl);
  const replicaId = blankToUndefined(env.HI_REPLICA_ID);
  return {
    host: env.HI_HOST ?? "127.0.0.1",
    port,
    artifactsDir: env.HI_ARTIFACTS_DIR ?? "./artifacts",
    policyPath: blankToUndefined(env.HI_POLICY),
    ollamaUrl: ollamaUrls[0],
    ollamaUrls,
    openaiBaseUrl: (env.OPENAI_BASE_URL ?? "https://api.openai.com/v1").replace(/\/+$/, ""),
    openaiApiKey: blankToUndefined(env.OPENAI_API_KEY),
    anthropicBaseUrl: (env.ANTHROPIC_BASE_URL ?? "https://api.anthropic.com").replace(/\/+$/, ""),
    anthropicApiKey: blankToUndefined(env.ANTHROPIC_API_KEY),
    logLevel: parseLogLevel(env.HI_LOG),
    upstreamClient: parseUpstreamClient(env.HI_UPSTREAM_CLIENT),
    databaseUrl,
    replicaId: replicaId === undefined ? undefined : checkReplicaId(replicaId),
    redis: env.HI_REDIS_URL?.trim() ? parseRedisUrl(env.HI_REDIS_URL.trim()) : undefined,
  };
}
