// The page's only way to the server: same-origin calls to /api/, with the client key when one was given.

const KEY_NAME = "hi-explorer-client-key";

/** Thrown when the router needs a client key (401). */
export class KeyNeeded extends Error {}

export function storedKey() {
  return sessionStorage.getItem(KEY_NAME);
}

export function storeKey(key) {
  sessionStorage.setItem(KEY_NAME, key);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_NAME);
}

/** GET (or POST with `body`) an API path; resolves with the parsed JSON or rejects with its error message. */
export async function api(path, body) {
  const headers = { accept: "application/json" };
  const key = storedKey();
  if (key) headers.authorization = `Bearer ${key}`;
  const init = { headers, credentials: "omit" };
  if (body !== undefined) {
    init.method = "POST";
    headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  if (response.status === 401) throw new KeyNeeded(await errorText(response));
  if (!response.ok) throw new Error(await errorText(response));
  return await response.json();
}

async function errorText(response) {
  try {
    const body = await response.json();
    return body?.error?.message ?? `HTTP ${response.status}`;
  } catch {
    return `HTTP ${response.status}`;
  }
}
