import { type LeaseReserver, LeaseStore } from "../authority/mod.ts";
import { CLOUD_PROVIDERS } from "../config/mod.ts";
import { loadPolicy, type Policy } from "../contract/mod.ts";
import { CheckpointWriter, EdrWriter, writePolicySnapshot } from "../edr/mod.ts";
import { HealthGate, type HealthGateOptions } from "../health/mod.ts";
import {
  AnthropicAdapter,
  Http1Agent,
  OllamaAdapter,
  OpenAIAdapter,
  type ProviderAdapter,
  type ProviderName,
  routedUpstreamFetch,
} from "../providers/mod.ts";
import { type HostSlot, inProcessSlots, type SlotFactory } from "../slot/mod.ts";
import { bestSnapshot, InFlight, type LocalHost } from "../pipeline/mod.ts";
import { EdrShipper, openEdrStore } from "../fleet/pg.ts";
import { createHeavySlot, RedisConnection, RedisLeaseReserver } from "../fleet/redis.ts";
import { ChatHandler } from "./chat_handler.ts";
import { serveGuarded } from "./connection_guard.ts";
import { listenEntry, type RouterConfig } from "./config.ts";
import { RouterMetrics } from "./metrics.ts";
import { createRouter } from "./router.ts";
import { BufferedLineWriter } from "./line_writer.ts";
import { RequestObserver } from "./request_observer.ts";
import { RequestTracer } from "./tracing.ts";
import { createExplorer, FileRecordSource, PgRecordSource, UI_DIR } from "../explorer/mod.ts";

/** Options for `startServer` beyond the configuration; tests inject clocks and readings here. */
export interface StartOptions {
  /** A policy object to use instead of reading `config.policyPath`. */
  policy?: Policy;
  /** Environment lookup for issuer secrets. */
  secrets?: Record<string, string | undefined>;
  /** Passed to the health gate (e.g. an injected memory reading). */
  health?: Partial<Omit<HealthGateOptions, "ollamaUrl" | "policy">>;
  /** Where operational log lines go (default stderr). */
  log?: (line: string) => void;
  /** Where the per-request lines go (default stdout, through a buffer; JSON lines, logfmt on a terminal). */
  requestLog?: (line: string) => void;
  now?: () => number;
  /** Test hook: adapters used instead of the ones built from the configuration (e.g. a failing fake). */
  adapters?: Partial<Record<ProviderName, ProviderAdapter>>;
  /** Makes each local host's heavy slot (default: an in-process slot per host). */
  createSlot?: SlotFactory;
}

/** A running router. */
export interface RunningServer {
  /** `http://host:port` the router listens on. */
  url: string;
  /** The first local host's health gate (the only one unless `OLLAMA_HOST` lists several). */
  health: HealthGate;
  /** The first local host's heavy slot. */
  slot: HostSlot;
  /** Every local host, in configured order. */
  hosts: LocalHost[];
  edr: EdrWriter;
  /** The shipper to PostgreSQL, when HI_DATABASE_URL is set. */
  shipping: EdrShipper | null;
  policy: Policy;
  /** Settles when the first health probe has (inference requests wait for it). */
  firstProbe: Promise<void>;
  /** Stops accepting requests, finishes in-flight ones, and flushes every record. */
  close(): Promise<void>;
}

/** Starts the router: loads the policy, opens the EDR writer and lease store, starts the health probe, serves. */
export async function startServer(config: RouterConfig, options: StartOptions = {}): Promise<RunningServer> {
  const log = options.log ?? ((line: string) => console.error(`[hybrid-inference] ${line}`));
  const policy = options.policy ?? await loadPolicy(config.policyPath);
  const checkpointEnv = policy.checkpoints.hmac_secret_env;
  const checkpointSecret = checkpointEnv === undefined ? undefined : options.secrets?.[checkpointEnv];
  if (checkpointEnv !== undefined && !checkpointSecret) {
    throw new Error(
      `the policy signs EDR checkpoints with the key in ${checkpointEnv}, which is not set; set it, or remove checkpoints.hmac_secret_env`,
    );
  }
  // Redis first: a fleet replica that cannot reach it must not start (nor write anything) at all.
  const redis = config.redis ? await RedisConnection.connect(config.redis, log) : null;
  await Deno.mkdir(config.artifactsDir, { recursive: true });
  const policyHash = await writePolicySnapshot(config.artifactsDir, policy);
  // Checked before the writer opens: an unreachable database ends the start with nothing left open.
  const store = config.databaseUrl
    ? await openEdrStore(config.databaseUrl, config.artifactsDir, config.replicaId)
    : null;
  // Counted by the chat pipeline, read by the writer: a request alone in flight may have its fdatasync
  // run on the event loop.
  const inFlight = new InFlight();
  const edr = await EdrWriter.open(config.artifactsDir, {
    validate: false,
    eventLoopIdle: () => inFlight.count === 0,
    log: (event) => log(`edr ${event.level}: ${event.msg}${event.reason ? ` (${event.reason})` : ""}`),
  });
  const checkpoints = CheckpointWriter.start(config.artifactsDir, edr, {
    intervalMs: policy.checkpoints.interval_s * 1000,
    key: checkpointSecret ? { keyId: policy.checkpoints.key_id, hmacSecret: checkpointSecret } : null,
    now: options.now,
    log,
  });
  const shipping = store
    ? await EdrShipper.start({ ...store, artifactsDir: config.artifactsDir, heads: () => edr.heads(), log })
    : null;
  // With the PostgreSQL store the explorer shows every replica's records; replay stays on this one's files.
  const ownRecords = new FileRecordSource(config.artifactsDir, {
    flush: () => edr.flush(),
    ollamaUrls: config.ollamaUrls,
  });
  const explorerSource = store ? new PgRecordSource(store.sql, { local: ownRecords }) : ownRecords;
  if (store) {
    log(
      `edr store: PostgreSQL ${store.target.redacted} (replica ${store.replicaId}` +
        `${store.applied.length ? `, migrations ${store.applied.join(", ")} applied` : ""}); records ship ` +
        "there asynchronously, the local WAL stays the commit point",
    );
  }
  const fileLeases = redis ? null : await LeaseStore.open(config.artifactsDir);
  const leases: LeaseReserver = fileLeases ?? new RedisLeaseReserver(redis!);
  const metrics = new RouterMetrics();
  const heavyModels = policy.models.filter((m) => m.provider === "local" && m.heavy).map((m) => m.name);
  const several = config.ollamaUrls.length > 1;
  // With Redis, each host's slot is shared by every replica using it (made here: opening one subscribes).
  const sharedSlots = redis && !options.createSlot
    ? new Map(
      await Promise.all(
        config.ollamaUrls.map(async (url) =>
          [url, await createHeavySlot(url, policy.slot, { redis, shared: { log } })] as const
        ),
      ),
    )
    : null;
  const createSlot = options.createSlot ??
    (sharedSlots ? (url: string) => sharedSlots.get(url)! : inProcessSlots(policy.slot));
  // Plain-http upstreams (Ollama, a LAN OpenAI-compatible server) go through our keep-alive HTTP/1.1
  // client, the cheapest transport measured; https goes through fetch.
  const http1 = new Http1Agent();
  const upstreamFetch = config.upstreamClient === "fetch" ? fetch : routedUpstreamFetch(http1);
  // One health gate, heavy slot and adapter per local host (OLLAMA_HOST may list several).
  const hosts: LocalHost[] = config.ollamaUrls.map((url) => ({
    url,
    health: new HealthGate({
      ollamaUrl: url,
      policy: policy.health,
      heavyModels,
      onChange: (snapshot) => {
        // The host-less gauges say whether local work can run anywhere; the labelled ones say where.
        const best = several ? bestSnapshot(hosts) : snapshot;
        metrics.setHealth(best.state, best.circuit);
        log(
          `local health ${snapshot.state}${several ? ` on ${url}` : ""} (circuit ${snapshot.circuit}${
            snapshot.reasons.length ? `; ${snapshot.reasons.join(", ")}` : ""
          })`,
        );
      },
      ...options.health,
    }),
    slot: createSlot(url),
    adapter: new OllamaAdapter({ baseUrl: url, fetch: upstreamFetch }),
  }));
  const { health, slot } = hosts[0];
  const adapters: Partial<Record<ProviderName, ProviderAdapter>> = { local: hosts[0].adapter };
  if (config.anthropicApiKey) {
    adapters.anthropic = new AnthropicAdapter({
      baseUrl: config.anthropicBaseUrl,
      apiKey: config.anthropicApiKey,
      fetch: upstreamFetch,
    });
  }
  if (config.openaiApiKey) {
    adapters.openai = new OpenAIAdapter({
      baseUrl: config.openaiBaseUrl,
      apiKey: config.openaiApiKey,
      fetch: upstreamFetch,
    });
  }
  Object.assign(adapters, options.adapters);
  if (adapters.local !== hosts[0].adapter) hosts[0] = { ...hosts[0], adapter: adapters.local! };
  const secrets = options.secrets ?? {};
  const stdoutLines = options.requestLog ? null : new BufferedLineWriter(Deno.stdout);
  const observer = new RequestObserver({
    level: config.logLevel,
    write: options.requestLog ?? ((line) => stdoutLines!.write(line)),
    format: !options.requestLog && Deno.stdout.isTerminal() ? "logfmt" : "json",
    tracer: RequestTracer.whenEnabled(),
    now: options.now,
  });
  const chat = new ChatHandler({
    policy,
    policyHash,
    health,
    slot,
    adapters,
    hosts: several ? hosts : undefined,
    edr,
    leases,
    metrics,
    secrets,
    log,
    observer,
    inFlight,
    now: options.now,
  });
  const handler = createRouter({
    chat,
    policy,
    health,
    slot,
    hosts,
    metrics,
    leases,
    secrets,
    edr,
    checkpoints,
    shipping,
    explorer: createExplorer({ source: explorerSource, uiDir: UI_DIR }),
    cloudProviders: CLOUD_PROVIDERS.filter((p) => adapters[p] !== undefined),
    now: options.now,
  });
  // No request may be decided on a gate that never probed: its snapshot has no age, and its record would
  // not be a valid EDR. Inference requests that arrive before the first probe ends (bounded by the
  // policy's probe timeout) wait for it; the port is bound at once, so a taken port is said at once, and
  // GET routes answer at once. The loop started next joins this probe instead of starting another.
  const firstProbe = Promise.all(hosts.map((h) => h.health.probeNow().catch(() => {}))).then(() => {});
  for (const host of hosts) host.health.start();
  let probed = false;
  firstProbe.then(() => probed = true);
  const serve = (request: Request) =>
    probed || request.method !== "POST" ? handler(request) : firstProbe.then(() => handler(request));
  const server = serveGuarded({
    hostname: config.host,
    port: config.port,
    maxConnections: policy.limits.max_connections,
    headerTimeoutMs: policy.limits.header_timeout_ms,
    keepAliveTimeoutMs: policy.limits.keep_alive_timeout_ms,
    log,
  }, serve);
  // Said once the port is bound, so a start that fails says only why.
  log(
    redis
      ? `stores: leases and the heavy slot${several ? "s" : ""} of ${
        config.ollamaUrls.join(", ")
      } shared in Redis at ${redis.target.display}`
      : `stores: leases in ${config.artifactsDir}/leases, heavy slot${
        several ? "s" : ""
      } in this process (set HI_REDIS_URL to share them)`,
  );
  const addr = server.addr;
  const url = `http://${listenEntry(addr.hostname, addr.port)}`;
  let closing: Promise<void> | null = null;
  return {
    url,
    health,
    slot,
    hosts,
    edr,
    shipping,
    policy,
    firstProbe,
    close() {
      closing ??= (async () => {
        await server.shutdown();
        http1.close();
        await Promise.all(hosts.map((h) => h.health.stop()));
        try {
          await edr.close();
        } finally {
          // The last checkpoint anchors every durable record, whatever happened to the files.
          await checkpoints.stop();
          // Spent leases must stay spent whatever happened to the records.
          await fileLeases?.close();
          await Promise.all([...(sharedSlots?.values() ?? [])].map((s) => s.close?.()));
          await redis?.close();
          // The last requests' lines reach stdout before the process exits.
          await stdoutLines?.flush();
          // Last: the final checkpoint is shipped too; what cannot be shipped now waits in the WAL.
          await shipping?.stop();
        }
      })();
      return closing;
    },
  };
}
