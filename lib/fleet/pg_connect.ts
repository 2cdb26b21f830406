/**
 * The PostgreSQL connection of the EDR store: parsing `HI_DATABASE_URL`, saying it without its password,
 * and opening a `postgres` (porsager) client that reads no environment variable besides PGAPPNAME (the
 * client reads that one whatever its options say). Every other setting the client would take from PG*
 * variables is given explicitly here, so the launcher grants only HI_DATABASE_URL and PGAPPNAME.
 */
import postgres from "postgres";
import { withoutUrlPassword } from "./url_password.ts";

/** A client of the EDR store. */
export type Sql = postgres.Sql;

/** What the router and verify need to know of a database URL. */
export interface DatabaseTarget {
  /** The URL as given (it may carry a password: never log it). */
  url: string;
  /** `host:port` for --allow-net (an IPv6 literal in brackets). */
  netEntry: string;
  /** The URL without user info and query, for logs: `postgres://db.example:5432/hi`. */
  redacted: string;
}

/** Parses a postgres:// or postgresql:// URL; the error says what is wrong without repeating the URL. */
export function parseDatabaseUrl(url: string): DatabaseTarget {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new Error("HI_DATABASE_URL is not a URL; give postgres://user:password@host:port/database");
  }
  if (parsed.protocol !== "postgres:" && parsed.protocol !== "postgresql:") {
    throw new Error(
      `HI_DATABASE_URL must start with postgres:// or postgresql://, not ${parsed.protocol}//`,
    );
  }
  if (parsed.hostname === "") throw new Error("HI_DATABASE_URL names no host; give postgres://user@host/db");
  if (parsed.hostname.includes(",")) {
    throw new Error("HI_DATABASE_URL names several hosts; give one (a primary or a proxy in front of it)");
  }
  if (parsed.username === "") throw new Error("HI_DATABASE_URL names no user; give postgres://user@host/db");
  if (parsed.pathname.length <= 1) {
    throw new Error("HI_DATABASE_URL names no database; end it with /<database>");
  }
  const port = parsed.port || "5432";
  const host = parsed.hostname;
  return {
    url,
    netEntry: `${host}:${port}`,
    redacted: `${parsed.protocol}//${host}:${port}${parsed.pathname}`,
  };
}

/** The client's settings it would otherwise read from PG* variables, at the client's own defaults. */
const CLIENT_DEFAULTS: Record<string, unknown> = {
  ssl: false,
  sslnegotiation: null,
  idle_timeout: null,
  connect_timeout: 10,
  max_pipeline: 100,
  keep_alive: 60,
  prepare: true,
  debug: false,
  fetch_types: false,
  publications: "alltables",
  // The library's own defaults for these two are functions; given here so it reads no PG* variable.
  max_lifetime: () => 60 * (30 + Math.random() * 30),
  backoff: (retries: number) => (0.5 + Math.random() / 2) * Math.min(3 ** retries / 100, 20),
};

/** Options of `openDatabase`. */
export interface OpenDatabaseOptions {
  /** Most connections (default 2: the shipper needs one at a time). */
  max?: number;
  /** Seconds to wait for a connection (default 10). */
  connectTimeoutS?: number;
  /**
   * The session the server must offer: `read-write` for the router, `primary` for verify (default). A
   * `target_session_attrs` in the URL's query wins (e.g. `standby` to verify on a hot standby).
   */
  session?: "read-write" | "primary";
}

/** Opens a client (lazily: the first query connects). Settings in the URL's query win over the defaults. */
export function openDatabase(target: DatabaseTarget, options: OpenDatabaseOptions = {}): Sql {
  const query = new URL(target.url).searchParams;
  const settings: Record<string, unknown> = {};
  for (const [name, value] of Object.entries(CLIENT_DEFAULTS)) {
    const inQuery = query.has(name) || (name === "ssl" && query.has("sslmode"));
    if (!inQuery) settings[name] = value;
  }
  if (!query.has("connect_timeout")) settings.connect_timeout = options.connectTimeoutS ?? 10;
  // A URL without a password would make the client read PGPASSWORD: a function is never falsy.
  const password = decodeURIComponent(new URL(target.url).password);
  return postgres(target.url, {
    ...settings,
    pass: () => password,
    max: options.max ?? 2,
    // Always set, so the client reads no PGTARGETSESSIONATTRS.
    target_session_attrs: query.get("target_session_attrs") ?? options.session ?? "primary",
    onnotice: () => {},
    connection: { application_name: "hybrid-inference" },
  } as postgres.Options<Record<string, never>>);
}

/** A short reason for a database error, without the URL or any password. */
export function databaseReason(error: unknown, target: DatabaseTarget): string {
  const text = error instanceof Error ? `${error.message}` : String(error);
  const code = (error as { code?: unknown })?.code;
  const safe = withoutUrlPassword(text.replaceAll(target.url, target.redacted), target.url).slice(0, 300);
  return typeof code === "string" && !safe.includes(code) ? `${safe} (${code})` : safe;
}
