/**
 * The one reading of `OLLAMA_HOST`, shared by the router, the launcher and replay. Pure: no Deno APIs.
 *
 * The rule is Ollama's own client's (envconfig.Host in github.com/ollama/ollama, whose table test this
 * module's test mirrors): a value without a scheme is `http` on port 11434; `http://host` without a port is
 * port 80 and `https://host` port 443, as any URL; `[::1]` and a bare `::1` are IPv6 literals on 11434; a
 * path is kept (a reverse proxy's prefix, `https://example.com/ollama`); surrounding spaces and quotes are
 * dropped. Where Ollama quietly falls back (a port out of range, another scheme) this module refuses with
 * an error that names the problem: a router pointed at the wrong host would route work there unseen.
 * Bind-all addresses (`0.0.0.0`, `::`) mean this machine, as they do for Ollama's own client.
 *
 * The router also takes a comma-separated list (`gpu1.lan:11434,gpu2.lan:11434`): several local hosts.
 */

/** Where Ollama listens when `OLLAMA_HOST` is unset or empty. */
export const DEFAULT_OLLAMA_URL = "http://127.0.0.1:11434";

/** Ollama's port when the value names no scheme and no port. */
const OLLAMA_DEFAULT_PORT = "11434";

/** A value of `OLLAMA_HOST` this module cannot read; the message says what to write instead. */
export class OllamaHostError extends Error {
  /** Builds the error; `message` is shown as is (it never holds a secret: hosts are not secret). */
  constructor(message: string) {
    super(message);
    this.name = "OllamaHostError";
  }
}

/**
 * One `OLLAMA_HOST` value as a base URL `scheme://host:port[/path]`, the port always written out, no
 * trailing slash. Empty or unset gives `http://127.0.0.1:11434`. Throws `OllamaHostError` for a value it
 * cannot read.
 */
export function normalizeOllamaHost(value: string | undefined): string {
  const raw = unquote(value ?? "");
  if (raw === "") return DEFAULT_OLLAMA_URL;
  const bad = (why: string) =>
    new OllamaHostError(
      `OLLAMA_HOST entry ${JSON.stringify(raw)} ${why}; write host, host:port or http(s)://host:port`,
    );
  let scheme = "http";
  let defaultPort = OLLAMA_DEFAULT_PORT;
  let rest = raw;
  const schemeEnd = raw.indexOf("://");
  if (schemeEnd !== -1) {
    scheme = raw.slice(0, schemeEnd).toLowerCase();
    if (scheme !== "http" && scheme !== "https") {
      throw bad(`has scheme ${scheme}, which is not http or https`);
    }
    defaultPort = scheme === "https" ? "443" : "80";
    rest = raw.slice(schemeEnd + 3);
  }
  if (/[\s?#@\\]/.test(rest)) throw bad("holds a space, ?, #, @ or \\");
  const slash = rest.indexOf("/");
  const hostPort = slash === -1 ? rest : rest.slice(0, slash);
  const path = slash === -1 ? "" : rest.slice(slash).replace(/\/+$/, "");
  let host: string;
  let port: string;
  if (hostPort.startsWith("[")) {
    const close = hostPort.indexOf("]");
    if (close === -1) throw bad("opens an IPv6 bracket it does not close");
    host = hostPort.slice(1, close);
    const after = hostPort.slice(close + 1);
    if (after === "") port = defaultPort;
    else if (after.startsWith(":")) port = after.slice(1);
    else throw bad("has text after the IPv6 bracket that is not :port");
  } else {
    const colons = hostPort.split(":").length - 1;
    if (colons >= 2) {
      // A bare IPv6 literal (`::1`) cannot carry a port: `[::1]:p` does.
      host = hostPort;
      port = defaultPort;
    } else if (colons === 1) {
      [host, port] = hostPort.split(":");
    } else {
      host = hostPort;
      port = defaultPort;
    }
  }
  if (!/^\d{1,5}$/.test(port) || Number(port) > 65535) throw bad(`has port ${JSON.stringify(port)}`);
  // An empty host (`:11434`) is this machine, as in Ollama.
  if (host === "" || host === "0.0.0.0") host = "127.0.0.1";
  if (host === "::") host = "::1";
  const literal = host.includes(":") ? `[${host}]` : host;
  let url: URL;
  try {
    url = new URL(`${scheme}://${literal}:${port}${path}`);
  } catch {
    throw bad("is not a host name or address");
  }
  // URL drops a scheme's default port from `host`; the base URL always says which port it uses.
  return `${scheme}://${url.hostname}:${Number(port)}${url.pathname === "/" ? "" : url.pathname}`;
}

/**
 * `OLLAMA_HOST` as a list of base URLs, in the order given: one host, or several separated by commas.
 * Empty or unset gives the default host. An empty entry or the same host twice is refused.
 */
export function parseOllamaHosts(value: string | undefined): string[] {
  const raw = unquote(value ?? "");
  if (raw === "") return [DEFAULT_OLLAMA_URL];
  const urls: string[] = [];
  const entries = raw.split(",");
  for (let i = 0; i < entries.length; i++) {
    const entry = unquote(entries[i]);
    if (entry === "") {
      throw new OllamaHostError(
        `OLLAMA_HOST has an empty entry (position ${
          i + 1
        } of ${entries.length}); separate hosts with single commas`,
      );
    }
    const url = normalizeOllamaHost(entry);
    if (urls.includes(url)) {
      throw new OllamaHostError(`OLLAMA_HOST lists ${url} twice; list each local host once`);
    }
    urls.push(url);
  }
  return urls;
}

/** `host:port` of a base URL, as Deno's `--allow-net` takes it (`[::1]:11434` for IPv6). */
export function ollamaNetEntry(baseUrl: string): string {
  const url = new URL(baseUrl);
  const port = url.port !== "" ? url.port : url.protocol === "https:" ? "443" : "80";
  return `${url.hostname}:${port}`;
}

/** Trims spaces and one pair of surrounding quotes, as Ollama does. */
function unquote(value: string): string {
  return value.trim().replace(/^["']+|["']+$/g, "").trim();
}
