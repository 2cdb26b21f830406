import {
  checkAuthority,
  checkClientKey,
  type LeaseReserver,
  LeaseStoreUnavailableError,
} from "../authority/mod.ts";
import { type CloudProvider, providerKeys } from "../config/mod.ts";
import { type Policy, policyServingProblem } from "../contract/mod.ts";
import type { HealthGate } from "../health/mod.ts";
import type { HostSlot } from "../slot/mod.ts";
import type { ChatHandler } from "./chat_handler.ts";
import {
  anthropicDialect,
  bestSnapshot,
  hostViews,
  type LocalHost,
  newRequestId,
  openAIDialect,
  openAIErrorBody,
  RouterError,
  slotTotals,
} from "../pipeline/mod.ts";
import type { RouterMetrics } from "./metrics.ts";
import type { Checkpoint, EdrWriterHealth } from "../edr/mod.ts";
import { type ExplorerHandler, explorerPathKind } from "../explorer/mod.ts";
import type { EdrShippingStatus } from "../fleet/pg.ts";

/** What the HTTP routes need besides the chat pipeline. */
export interface RouterOptions {
  chat: ChatHandler;
  policy: Policy;
  /** The first local host's gate and slot (the only ones unless `OLLAMA_HOST` lists several). */
  health: HealthGate;
  slot: HostSlot;
  /** Every local host, in configured order; without it, the one host above. */
  hosts?: readonly LocalHost[];
  metrics: RouterMetrics;
  leases: LeaseReserver;
  secrets: Record<string, string | undefined>;
  /** The EDR writer's state, for `/readyz` and `/metrics`. */
  edr: { health(): EdrWriterHealth };
  /** Signed heads of the EDR chains, for `GET /v1/edr/head`. */
  checkpoints?: { heads(): Promise<Checkpoint[]> };
  /** Shipping of EDRs to PostgreSQL, when configured: `/readyz` warns while it fails, `/metrics` counts. */
  shipping?: { status(): EdrShippingStatus } | null;
  /** Cloud providers with a key configured. */
  cloudProviders: CloudProvider[];
  /** The EDR explorer: `/ui` (served without a client key) and `/api/` (docs/explorer.md). */
  explorer?: ExplorerHandler;
  now?: () => number;
}

/** Builds the one request handler `Deno.serve` calls. */
export function createRouter(options: RouterOptions): (request: Request) => Promise<Response> {
  const { chat, health, slot, metrics, policy } = options;
  const hosts = options.hosts ?? [];
  const several = hosts.length > 1;
  const now = options.now ?? Date.now;
  // The router's start, in Unix seconds: the `created` of the policy's cloud models in GET /v1/models.
  const startedAt = Math.floor(now() / 1000);
  // Policy and keys are fixed for the router's life, so whether any request can be served is known now.
  const servingProblem = policyServingProblem(
    policy,
    providerKeys((p) => options.cloudProviders.includes(p)),
  );
  // With client keys listed, every route but /healthz (and the explorer page's files) needs one (the
  // inference routes check it inside the chat pipeline, with an EDR); /readyz without one answers only
  // whether the router is ready.
  const keysRequired = policy.client_keys.length > 0;
  const clientKeyOf = (request: Request) =>
    checkClientKey(request.headers, { keys: policy.client_keys, allowXApiKey: true });
  const route = async (request: Request, path: string, inference: boolean): Promise<Response> => {
    // The explorer's page loads without a key (it asks for one); its API needs one like every route.
    const explorerKind = options.explorer ? explorerPathKind(path) : null;
    if (keysRequired && !inference && path !== "/healthz" && path !== "/readyz" && explorerKind !== "ui") {
      const key = clientKeyOf(request);
      if (!key.ok) return error(401, key.code, key.message);
    }
    if (explorerKind !== null) return (await options.explorer!(request))!;
    if (request.method === "POST") {
      if (path === "/v1/chat/completions") return await chat.handle(request, openAIDialect);
      if (path === "/v1/messages") return await chat.handle(request, anthropicDialect);
    } else if (request.method === "GET") {
      if (path === "/healthz") return json(200, { status: "ok" });
      if (path === "/readyz") {
        const healthSnapshot = health.snapshot();
        const edr = options.edr.health();
        const reasons: string[] = [];
        if (servingProblem !== null) reasons.push("policy_serves_nothing");
        // With several hosts, local work can run while one host is fit; `hosts` says which are not.
        if ((several ? bestSnapshot(hosts) : healthSnapshot).state === "unfit") reasons.push("local_unfit");
        if (edr.state !== "ok") reasons.push("edr_writer_degraded");
        const ready = reasons.length === 0;
        if (keysRequired && !clientKeyOf(request).ok) return json(ready ? 200 : 503, { ready });
        const reason = servingProblem === null ? {} : { reason: servingProblem };
        // Shipping behind is not a reason to take the router out of rotation: answers do not wait for it.
        const shipping = options.shipping?.status();
        const warnings = shipping?.state === "retrying" ? ["edr_shipping_behind"] : [];
        return json(ready ? 200 : 503, {
          ready,
          reasons,
          ...reason,
          ...(shipping ? { warnings, edr_shipping: shipping } : {}),
          edr,
          local: healthSnapshot,
          slot: slot.snapshot(),
          ...(several ? { hosts: hostViews(hosts) } : {}),
        });
      }
      if (path === "/v1/models") return json(200, listModels(options, startedAt));
      if (path === "/v1/edr/head" && options.checkpoints) {
        return json(200, { object: "edr.heads", heads: await options.checkpoints.heads() });
      }
      if (path === "/metrics") {
        if (policy.authority.required) {
          const verdict = await checkAuthority(undefined, {
            required: true,
            neededScope: "metrics:read",
            policy: policy.authority,
            now: now(),
            leases: options.leases,
            secrets: options.secrets,
            header: request.headers.get("x-authority"),
          }).catch((e) => {
            if (e instanceof LeaseStoreUnavailableError) return null;
            throw e;
          });
          if (verdict === null) {
            return error(
              503,
              "LEASE_STORE_UNAVAILABLE",
              "the lease store could not be reached; retry shortly",
            );
          }
          if (!verdict.ok) return error(403, verdict.code, verdict.message);
        }
        // The slot gauges are read at scrape time: the slot itself knows nothing of metrics.
        const slotNow = slot.snapshot();
        if (several) metrics.setSlot(slotTotals(hosts));
        else metrics.setSlot({ busy: slotNow.busy, queueDepth: slotNow.queue_depth });
        for (const host of hosts) {
          const h = host.health.snapshot();
          const s = host.slot.snapshot();
          metrics.setLocalHost(host.url, {
            state: h.state,
            circuit: h.circuit,
            busy: s.busy,
            queueDepth: s.queue_depth,
          });
        }
        const edrNow = options.edr.health();
        metrics.setEdrWriter({
          degraded: edrNow.state !== "ok",
          filesWaitingRetry: edrNow.files_waiting_retry,
        });
        const shipping = options.shipping?.status();
        if (shipping) {
          metrics.setEdrShipping({ backlog: shipping.backlog, errorsTotal: shipping.errors_total });
        }
        const exposition = await metrics.render();
        return new Response(exposition.body, { headers: { "content-type": exposition.contentType } });
      }
    }
    const known = [
      "/v1/chat/completions",
      "/v1/messages",
      "/healthz",
      "/readyz",
      "/v1/models",
      "/metrics",
      "/v1/edr/head",
    ];
    if (known.includes(path)) {
      return error(405, "METHOD_NOT_ALLOWED", `${request.method} is not allowed on ${path}`);
    }
    return error(
      404,
      "NOT_FOUND",
      `no route for ${request.method} ${path}; see the README for the endpoints`,
    );
  };
  return async (request: Request): Promise<Response> => {
    const path = pathnameOf(request.url);
    const inference = request.method === "POST" && INFERENCE_PATHS.has(path);
    const response = await route(request, path, inference);
    // Inference answers carry their EDR's request id already; every other answer gets one of its own.
    if (!inference && !response.headers.has("x-request-id")) {
      response.headers.set("x-request-id", newRequestId());
    }
    return response;
  };
}

/** The chat routes: POSTed, they run the pipeline, whose answers (and records) carry their request id. */
const INFERENCE_PATHS = new Set(["/v1/chat/completions", "/v1/messages"]);

/**
 * The URL's path as `new URL(url).pathname` (its plain twin) gives it. When what follows the host is exactly
 * an inference path, the path under load, it already is what the parser would return (it has no dot
 * segment, escape, query or fragment) and is used as it is; anything else goes through the parser.
 * tests/http/pathname_test.ts holds the two equal; bench/request_path_bench.ts times them.
 */
export function pathnameOf(url: string): string {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start !== -1) {
    const raw = url.slice(start);
    if (INFERENCE_PATHS.has(raw)) return raw;
  }
  return new URL(url).pathname;
}

/**
 * `GET /v1/models`: installed local models with `created` from Ollama's `modified_at`, and the policy's
 * cloud models with `created` set to when the router started (the moment it took that list from its
 * policy); never 0.
 */
function listModels(options: RouterOptions, startedAt: number) {
  // Every local host's models, each name once (the first host listing it gives its `created`).
  const seen = new Set<string>();
  const gates = options.hosts && options.hosts.length > 1
    ? options.hosts.map((h) => h.health)
    : [options.health];
  const local = gates.flatMap((gate) => gate.installedCatalog()).filter((m) =>
    !seen.has(m.name) && seen.add(m.name)
  )
    .map((m) => ({
      id: m.name,
      object: "model",
      created: m.created ?? startedAt,
      owned_by: "local",
    }));
  const cloud = options.policy.models
    .filter((m) => m.provider !== "local" && options.cloudProviders.includes(m.provider))
    .map((m) => ({ id: m.name, object: "model", created: startedAt, owned_by: m.provider }));
  return { object: "list", data: [...local, ...cloud] };
}

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "content-type": "application/json" } });
}

function error(status: number, code: string, message: string): Response {
  const failure = new RouterError(status, code, message, {
    failureType: "validation_error",
    stage: "parse",
    shouldRetry: false,
  });
  return new Response(JSON.stringify(openAIErrorBody(failure)), {
    status,
    headers: { "content-type": "application/json", "x-should-retry": "false" },
  });
}
