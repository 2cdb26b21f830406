/**
 * The explorer's HTTP side: the JSON API under `/api/` and the page's static files under `/ui`
 * (docs/explorer.md). The router mounts it behind its client-key check; `deno task explore` serves it
 * alone over an artifacts folder. It only reads: nothing here writes to the artifacts folder.
 */
import { join } from "node:path";
import type { EdrRecord } from "../edr/mod.ts";
import type { RecordFilter, RecordSource } from "./source.ts";
import { dayStats } from "./summary.ts";

/** The page may load only its own files and talk only to its own origin. */
export const UI_CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  "img-src 'self'",
  "connect-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join("; ");

const STATIC_TYPES: Record<string, string> = {
  html: "text/html; charset=utf-8",
  js: "text/javascript; charset=utf-8",
  css: "text/css; charset=utf-8",
  svg: "image/svg+xml",
};
// Only plain names directly in ui/: nothing in a URL can reach another folder.
const STATIC_NAME = /^[a-z0-9_-]+\.(html|js|css|svg)$/;
const REQUEST_ID = /^req_[0-9a-f]{32}$/;
const DAY = /^\d{4}-\d{2}-\d{2}$/;
const FILTER_VALUE = /^[A-Za-z0-9_:.-]{1,80}$/;
const DEFAULT_LIMIT = 50;
const MAX_LIMIT = 500;

/** What the explorer serves from. */
export interface ExplorerOptions {
  source: RecordSource;
  /** The folder of the page's files (the repository's `ui/`). */
  uiDir: string;
}

/** Answers `/ui`, `/ui/*` and `/api/*`; null for any other path (the caller answers those). */
export type ExplorerHandler = (request: Request) => Promise<Response | null>;

/** Whether a path belongs to the explorer's page (served without a client key) or its API (needs one). */
export function explorerPathKind(path: string): "ui" | "api" | null {
  if (path === "/ui" || path.startsWith("/ui/")) return "ui";
  if (path === "/api" || path.startsWith("/api/")) return "api";
  return null;
}

/** Builds the explorer's request handler. */
export function createExplorer(options: ExplorerOptions): ExplorerHandler {
  const { source } = options;
  return async (request) => {
    const url = new URL(request.url);
    const kind = explorerPathKind(url.pathname);
    if (kind === null) return null;
    if (kind === "ui") return await serveStatic(options.uiDir, url.pathname, request.method);
    try {
      return await api(source, request, url);
    } catch (error) {
      // A folder or log that cannot be read: say which operation failed, never the record's content.
      return apiError(500, "EXPLORER_READ_FAILED", `the records could not be read: ${(error as Error).name}`);
    }
  };
}

async function api(source: RecordSource, request: Request, url: URL): Promise<Response> {
  const parts = url.pathname.split("/").slice(2); // "", "api", ...
  const method = request.method;
  const get = method === "GET" || method === "HEAD";
  if (parts.length === 1 && parts[0] === "days" && get) return json({ days: await source.days() });
  if (parts[0] === "days" && parts.length >= 2) {
    const day = parts[1];
    if (!DAY.test(day)) return apiError(400, "INVALID_DAY", "a day is written YYYY-MM-DD");
    if (parts.length === 2 && get) return json(dayStats(day, await source.daySummaries(day)));
    if (parts.length === 3 && parts[2] === "verify" && get) {
      if (!source.verifyDay) return notSupported("verify");
      return json(await source.verifyDay(day));
    }
  }
  if (parts.length === 1 && parts[0] === "facets" && get) {
    const day = url.searchParams.get("day") ?? "";
    if (day !== "" && !DAY.test(day)) return apiError(400, "INVALID_DAY", "a day is written YYYY-MM-DD");
    const days = await source.days();
    const rows = (await Promise.all(
      days.filter((d) => day === "" || d.day === day).map((d) => source.daySummaries(d.day)),
    )).flat();
    const distinct = (values: (string | null)[]) =>
      [...new Set(values.filter((v): v is string => v !== null))].sort();
    return json({
      days: days.map((d) => d.day),
      providers: distinct(rows.map((r) => r.provider)),
      statuses: distinct(rows.map((r) => r.status)),
      reasons: distinct(rows.flatMap((r) => r.reasons)),
      classifications: distinct(rows.map((r) => r.classification)),
    });
  }
  if (parts[0] === "records") {
    if (parts.length === 1 && get) return await listRecords(source, url);
    const id = parts[1];
    if (parts.length >= 2 && !REQUEST_ID.test(id)) {
      return apiError(400, "INVALID_REQUEST_ID", "a request id is req_ followed by 32 lower-case hex digits");
    }
    if (parts.length === 2 && get) {
      const record = await source.get(id);
      if (record === null) return apiError(404, "RECORD_NOT_FOUND", `no record has the request id ${id}`);
      return json({ record, chain: await chainOf(source, record) });
    }
    if (parts.length === 3 && parts[2] === "replay") {
      if (method !== "POST") return apiError(405, "METHOD_NOT_ALLOWED", "replay is POST");
      // A JSON content type cannot be sent cross-site without a preflight, which this API never grants.
      if (!(request.headers.get("content-type") ?? "").startsWith("application/json")) {
        return apiError(415, "UNSUPPORTED_MEDIA_TYPE", "send replay with content-type: application/json");
      }
      if (!source.replay) return notSupported("replay");
      const replayed = await source.replay(id);
      if (replayed === null) return apiError(404, "RECORD_NOT_FOUND", `no record has the request id ${id}`);
      return json(replayed);
    }
  }
  return apiError(
    404,
    "NOT_FOUND",
    `no explorer API route for ${method} ${url.pathname}; see docs/explorer.md`,
  );
}

/** The records either side of `record` in its day's chain, as the source holds them. */
async function chainOf(source: RecordSource, record: EdrRecord) {
  if (source.neighbours) return await source.neighbours(record);
  const day = record.timestamp.slice(0, 10);
  const at = async (sequence: number) => {
    if (sequence < 1) return null;
    const row = (await source.list({ day, sequence }, { limit: 1 })).records[0];
    return row ? { request_id: row.request_id, sequence: row.sequence, edr_hash: row.edr_hash } : null;
  };
  const [previous, next] = await Promise.all([at(record.sequence - 1), at(record.sequence + 1)]);
  return { previous, next };
}

async function listRecords(source: RecordSource, url: URL): Promise<Response> {
  const params = url.searchParams;
  const filter: RecordFilter = {};
  const names = ["day", "provider", "status", "reason", "classification", "request_id", "sequence"] as const;
  for (const name of names) {
    const value = params.get(name);
    if (value === null || value === "") continue;
    if (!FILTER_VALUE.test(value)) {
      return apiError(400, "INVALID_FILTER", `${name} takes letters, digits and _:.- only (at most 80)`);
    }
    if (name === "request_id") filter.requestId = value;
    else if (name === "sequence") {
      if (!/^[1-9]\d{0,9}$/.test(value)) {
        return apiError(400, "INVALID_FILTER", "sequence is a whole number from 1");
      }
      filter.sequence = Number(value);
    } else filter[name] = value;
  }
  if (filter.day !== undefined && !DAY.test(filter.day)) {
    return apiError(400, "INVALID_DAY", "a day is written YYYY-MM-DD");
  }
  const cursor = params.get("cursor") || undefined;
  if (cursor !== undefined && !source.isCursor(cursor)) {
    return apiError(400, "INVALID_CURSOR", "pass back the next_cursor of the previous page as it was");
  }
  const limitText = params.get("limit");
  const limit = limitText === null ? DEFAULT_LIMIT : Number(limitText);
  if (!Number.isInteger(limit) || limit < 1 || limit > MAX_LIMIT) {
    return apiError(400, "INVALID_LIMIT", `limit is a whole number from 1 to ${MAX_LIMIT}`);
  }
  return json(await source.list(filter, { cursor, limit }));
}

async function serveStatic(uiDir: string, path: string, method: string): Promise<Response> {
  if (method !== "GET" && method !== "HEAD") {
    return apiError(405, "METHOD_NOT_ALLOWED", `${method} is not allowed on ${path}`);
  }
  const name = path === "/ui" || path === "/ui/" ? "index.html" : path.slice("/ui/".length);
  const match = STATIC_NAME.exec(name);
  let body: Uint8Array<ArrayBuffer> | null = null;
  if (match) {
    try {
      body = await Deno.readFile(join(uiDir, name));
    } catch (error) {
      if (!(error instanceof Deno.errors.NotFound)) throw error;
    }
  }
  const headers = new Headers({
    "content-security-policy": UI_CONTENT_SECURITY_POLICY,
    "x-content-type-options": "nosniff",
    "referrer-policy": "no-referrer",
    "cache-control": "no-cache",
  });
  if (body === null || !match) {
    headers.set("content-type", "text/plain; charset=utf-8");
    return new Response(`no file ${path} in the explorer`, { status: 404, headers });
  }
  headers.set("content-type", STATIC_TYPES[match[1]]);
  return new Response(method === "HEAD" ? null : body, { headers });
}

const API_HEADERS = {
  "content-type": "application/json",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  "content-security-policy": "default-src 'none'; frame-ancestors 'none'",
};

function json(body: unknown, status = 200): Response {
  return new Response(JSON.stringify(body), { status, headers: API_HEADERS });
}

/** The explorer's error shape: the router's own (`{"error":{message,type,code}}`). */
function apiError(status: number, code: string, message: string): Response {
  const type = status >= 500 ? "server_error" : "invalid_request_error";
  return json({ error: { message, type, code, param: null } }, status);
}

function notSupported(what: string): Response {
  return apiError(501, "NOT_SUPPORTED", `this record source cannot ${what}`);
}
