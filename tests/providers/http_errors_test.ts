import assert from "node:assert/strict";
import { type CallOptions, type ProviderName, UpstreamError } from "../../lib/providers/types.ts";
import { parseRetryAfter, streamCutError, upstreamHttpError } from "../../lib/providers/http_errors.ts";
import { upstreamCall } from "../../lib/providers/upstream_call.ts";
import { callOptionsFor } from "./call_helpers.ts";

const openaiBody = (
  message: string,
  code: string | null = null,
  type = "invalid_request_error",
  param: string | null = null,
) => ({
  error: { message, type, param, code },
});

interface Row {
  name: string;
  provider: ProviderName;
  status: number;
  body: unknown;
  headers?: Record<string, string>;
  expect: { status: number; code: string; fallback: boolean; retryAfter?: number; type?: string };
}

const ROWS: Row[] = [
  {
    name: "400 stays 400",
    provider: "openai",
    status: 400,
    body: openaiBody("bad 'messages'", null, "invalid_request_error", "messages"),
    expect: { status: 400, code: "UPSTREAM_INVALID_REQUEST", fallback: false, type: "invalid_request_error" },
  },
  {
    name: "404 stays 404",
    provider: "local",
    status: 404,
    body: { error: 'model "x" not found, try pulling it first' },
    expect: { status: 404, code: "UPSTREAM_NOT_FOUND", fallback: false },
  },
  {
    name: "413 stays 413",
    provider: "anthropic",
    status: 413,
    body: { type: "error", error: { type: "request_too_large", message: "too large" } },
    expect: { status: 413, code: "UPSTREAM_REQUEST_TOO_LARGE", fallback: false },
  },
  {
    name: "422 stays 422",
    provider: "openai",
    status: 422,
    body: openaiBody("unprocessable"),
    expect: { status: 422, code: "UPSTREAM_INVALID_REQUEST", fallback: false },
  },
  {
    name: "401 is our key: 502 and fallback",
    provider: "openai",
    status: 401,
    body: openaiBody("Incorrect API key provided: sk-abc*****wxyz", "invalid_api_key"),
    expect: { status: 502, code: "UPSTREAM_AUTH_FAILED", fallback: true },
  },
  {
    name: "403 is our key too",
    provider: "anthropic",
    status: 403,
    body: { type: "error", error: { type: "permission_error", message: "no" } },
    expect: { status: 502, code: "UPSTREAM_AUTH_FAILED", fallback: true },
  },
  {
    name: "408 is a fallback-worthy timeout",
    provider: "openai",
    status: 408,
    body: "",
    expect: { status: 504, code: "UPSTREAM_TIMEOUT", fallback: true },
  },
  {
    name: "429 keeps retry-after",
    provider: "openai",
    status: 429,
    body: openaiBody("slow down", "rate_limit_exceeded", "requests"),
    headers: { "retry-after": "12" },
    expect: {
      status: 429,
      code: "UPSTREAM_RATE_LIMITED",
      fallback: true,
      retryAfter: 12,
      type: "rate_limit_error",
    },
  },
  {
    name: "429 insufficient_quota is exhausted quota, still fallback",
    provider: "openai",
    status: 429,
    body: openaiBody("You exceeded your current quota", "insufficient_quota", "insufficient_quota"),
    expect: { status: 502, code: "UPSTREAM_QUOTA_EXHAUSTED", fallback: true },
  },
  {
    name: "500 is unavailable",
    provider: "local",
    status: 500,
    body: { error: "llama runner process has terminated" },
    expect: { status: 502, code: "UPSTREAM_UNAVAILABLE", fallback: true },
  },
  {
    name: "502 is unavailable",
    provider: "openai",
    status: 502,
    body: "<html>bad gateway</html>",
    expect: { status: 502, code: "UPSTREAM_UNAVAILABLE", fallback: true },
  },
  {
    name: "503 is unavailable",
    provider: "openai",
    status: 503,
    body: openaiBody("The server is overloaded or not ready yet.", null, "server_error"),
    expect: { status: 503, code: "UPSTREAM_UNAVAILABLE", fallback: true },
  },
  {
    name: "ollama's 503 server busy is busy",
    provider: "local",
    status: 503,
    body: { error: "server busy, please try again.  maximum pending requests exceeded" },
    expect: { status: 503, code: "UPSTREAM_BUSY", fallback: true },
  },
  {
    name: "504 is a timeout",
    provider: "anthropic",
    status: 504,
    body: "",
    expect: { status: 504, code: "UPSTREAM_TIMEOUT", fallback: true },
  },
  {
    name: "529 is overloaded",
    provider: "anthropic",
    status: 529,
    body: { type: "error", error: { type: "overloaded_error", message: "Overloaded" } },
    headers: { "retry-after": "3" },
    expect: { status: 503, code: "UPSTREAM_OVERLOADED", fallback: true, retryAfter: 3 },
  },
];

const modelCallOptions = callOptionsFor("m");

function callOptions(over: Partial<CallOptions> = {}): CallOptions & { provider: ProviderName } {
  return { provider: "openai", ...modelCallOptions(over) };
}

/** A started call's response (its body unread), or the call's `UpstreamError`. */
async function upstreamFetch(...args: Parameters<typeof upstreamCall>) {
  return (await upstreamCall(...args)).response;
}

Deno.test("upstream error mapping", async (t) => {
  for (const row of ROWS) {
    await t.step(row.name, () => {
      const error = upstreamHttpError(row.provider, row.status, row.body, new Headers(row.headers ?? {}));
      assert.ok(error instanceof UpstreamError);
      assert.equal(error.status, row.expect.status);
      assert.equal(error.code, row.expect.code);
      assert.equal(error.fallback, row.expect.fallback);
      assert.equal(error.upstreamStatus, row.status);
      assert.equal(error.retryAfter, row.expect.retryAfter);
      if (row.expect.type) assert.equal(error.type, row.expect.type);
      assert.doesNotMatch(error.message, /sk-/);
      assert.doesNotMatch(error.message, /\.$/);
    });
  }

  await t.step("client-caused errors carry the upstream's message and param", () => {
    const error = upstreamHttpError(
      "openai",
      400,
      openaiBody("bad 'messages'", null, "invalid_request_error", "messages"),
      new Headers(),
    );
    assert.match(error.message, /bad 'messages'/);
    assert.equal(error.param, "messages");
  });

  await t.step("anything that looks like an api key is scrubbed from upstream messages", () => {
    const error = upstreamHttpError(
      "openai",
      400,
      openaiBody("key sk-proj-ABCDEF123456 is odd"),
      new Headers(),
      {
        secrets: ["my-secret-value"],
      },
    );
    assert.doesNotMatch(error.message, /ABCDEF123456/);
    const own = upstreamHttpError("local", 400, { error: "bad my-secret-value here" }, new Headers(), {
      secrets: ["my-secret-value"],
    });
    assert.doesNotMatch(own.message, /my-secret-value/);
  });

  await t.step("retry-after is read as seconds, milliseconds or a date", () => {
    assert.equal(parseRetryAfter(new Headers({ "retry-after": "20" })), 20);
    assert.equal(parseRetryAfter(new Headers({ "retry-after-ms": "1500" })), 2);
    const now = Date.parse("2026-01-01T00:00:00Z");
    assert.equal(parseRetryAfter(new Headers({ "retry-after": "Thu, 01 Jan 2026 00:00:30 GMT" }), now), 30);
    assert.equal(parseRetryAfter(new Headers()), undefined);
  });

  await t.step("a stream cut is a 502 that is never fallback-worthy", () => {
    const error = streamCutError("anthropic");
    assert.equal(error.code, "UPSTREAM_STREAM_CUT");
    assert.equal(error.status, 502);
    assert.equal(error.fallback, false);
  });
});

Deno.test("upstreamCall", async (t) => {
  await t.step("a connect error (fetch TypeError) is a fallback-worthy 502", async () => {
    const fetchFails = () => Promise.reject(new TypeError("error sending request: connection refused"));
    await assert.rejects(
      upstreamFetch("http://127.0.0.1:1/x", {}, { ...callOptions(), fetch: fetchFails }),
      (e: unknown) => {
        assert.ok(e instanceof UpstreamError);
        assert.equal(e.code, "UPSTREAM_CONNECT_FAILED");
        assert.equal(e.fallback, true);
        return true;
      },
    );
  });

  await t.step("a non-2xx answer is read and mapped", async () => {
    const fetch429 = () =>
      Promise.resolve(
        new Response(JSON.stringify(openaiBody("slow", "rate_limit_exceeded")), {
          status: 429,
          headers: { "retry-after": "4" },
        }),
      );
    await assert.rejects(
      upstreamFetch("http://x.test/", {}, { ...callOptions(), fetch: fetch429 }),
      (e: unknown) => {
        assert.ok(e instanceof UpstreamError);
        assert.equal(e.code, "UPSTREAM_RATE_LIMITED");
        assert.equal(e.retryAfter, 4);
        return true;
      },
    );
  });

  await t.step("a 2xx answer is returned as is", async () => {
    const ok = () => Promise.resolve(new Response("fine"));
    const response = await upstreamFetch("http://x.test/", {}, { ...callOptions(), fetch: ok });
    assert.equal(await response.text(), "fine");
  });

  await t.step("no headers in time is a fallback-worthy 504, and the fetch is aborted", async () => {
    let sawAbort = false;
    const never = (_url: string | URL | Request, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => {
          sawAbort = true;
          reject(init.signal!.reason);
        });
      });
    await assert.rejects(
      upstreamFetch("http://x.test/", {}, {
        ...callOptions({ firstByteTimeoutMs: 50 }),
        fetch: never as typeof fetch,
      }),
      (e: unknown) => {
        assert.ok(e instanceof UpstreamError);
        assert.equal(e.code, "UPSTREAM_TIMEOUT");
        assert.equal(e.status, 504);
        assert.equal(e.fallback, true);
        return true;
      },
    );
    assert.equal(sawAbort, true);
  });

  await t.step("the caller's abort is CLIENT_ABORTED, never fallback-worthy", async () => {
    const controller = new AbortController();
    const never = (_url: string | URL | Request, init?: RequestInit) =>
      new Promise<Response>((_resolve, reject) => {
        init?.signal?.addEventListener("abort", () => reject(init.signal!.reason));
        controller.abort();
      });
    await assert.rejects(
      upstreamFetch("http://x.test/", {}, {
        ...callOptions({ signal: controller.signal }),
        fetch: never as typeof fetch,
      }),
      (e: unknown) => {
        assert.ok(e instanceof UpstreamError);
        assert.equal(e.code, "CLIENT_ABORTED");
        assert.equal(e.status, 499);
        assert.equal(e.fallback, false);
        return true;
      },
    );
  });
});
