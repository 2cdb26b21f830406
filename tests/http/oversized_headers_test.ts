/**
 * Request heads over Deno.serve's limits (about 64 KiB, or more than 128 header fields) never reach the
 * router: Deno answers a bare `400 Bad Request` (no body, no x-request-id) and closes the connection, so no
 * EDR can be written. These steps pin what docs/security.md says a client sees, and that the router,
 * run as `deno task serve`, keeps serving afterwards.
 */
import assert from "node:assert/strict";
import { startServeHealthy } from "../e2e/serve_harness.ts";

/** Sends a raw HTTP/1.1 request head and returns what came back before the server closed. */
async function rawRequest(url: string, head: string, body = ""): Promise<string> {
  const { hostname, port } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const writer = conn.writable.getWriter();
  // The server may answer and close before it has read all of an oversized head.
  const writing = writer.write(new TextEncoder().encode(head + body)).catch(() => {});
  let received = "";
  try {
    for await (const chunk of conn.readable.pipeThrough(new TextDecoderStream())) received += chunk;
  } catch (error) {
    if (!(error instanceof Deno.errors.ConnectionReset)) throw error;
  }
  await writing;
  await writer.close().catch(() => {});
  return received;
}

function head(method: string, path: string, headers: string[], contentLength?: number): string {
  const lines = [`${method} ${path} HTTP/1.1`, "host: 127.0.0.1", "connection: close", ...headers];
  if (contentLength !== undefined) {
    lines.push("content-type: application/json", `content-length: ${contentLength}`);
  }
  return lines.join("\r\n") + "\r\n\r\n";
}

const CHAT_BODY = JSON.stringify({ model: "auto", messages: [{ role: "user", content: "hello" }] });

Deno.test("request heads over Deno.serve's limits get a bare 400 and the router keeps serving", async (t) => {
  const h = await startServeHealthy();
  try {
    const oversized = [`x-padding: ${"a".repeat(70 * 1024)}`];
    const manyFields = Array.from({ length: 129 }, (_, i) => `x-field-${i}: v`);

    for (
      const [what, headers] of [["a 70 KB header", oversized], ["129 header fields", manyFields]] as const
    ) {
      await t.step(`${what} on POST /v1/chat/completions: bare 400, no request id, no EDR`, async () => {
        const answer = await rawRequest(
          h.url,
          head("POST", "/v1/chat/completions", [...headers], CHAT_BODY.length),
          CHAT_BODY,
        );
        const [statusLine, ...rest] = answer.split("\r\n");
        assert.equal(statusLine, "HTTP/1.1 400 Bad Request");
        const answerHead = rest.join("\n").toLowerCase();
        assert.match(answerHead, /content-length: 0/);
        assert.doesNotMatch(answerHead, /x-request-id/);
        assert.equal(h.ollama.requests.length, 0, "nothing reached a provider");
      });
    }

    await t.step("a 60 KB header still reaches the router and gets its request id", async () => {
      const answer = await rawRequest(
        h.url,
        head("GET", "/healthz", [`x-padding: ${"a".repeat(60 * 1024)}`]),
      );
      assert.match(answer, /^HTTP\/1\.1 200 OK/);
      assert.match(answer.toLowerCase(), /x-request-id: req_/);
    });

    await t.step("the router still answers, and only the normal request has an EDR", async () => {
      const { response } = await h.client.chat.completions
        .create({ model: "auto", messages: [{ role: "user", content: "still here" }] })
        .withResponse();
      const records = await h.records();
      assert.deepEqual(records.map((r) => r.request_id), [response.headers.get("x-request-id")]);
    });
  } finally {
    await h.close();
  }
});
