/**
 * Every answer carries an `x-request-id`, through `deno task serve`: an inference answer its record's, every
 * other answer (other routes, other methods on the chat routes, unknown paths) one of its own.
 */
import assert from "node:assert/strict";
import { startServeHealthy } from "../e2e/serve_harness.ts";

const ID = /^req_[0-9a-f]{32}$/;

Deno.test("every answer has an x-request-id, and an inference answer's is its record's", async () => {
  const router = await startServeHealthy();
  try {
    const chat = await fetch(`${router.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "auto", messages: [{ role: "user", content: "which id?" }] }),
    });
    await chat.body?.cancel();
    assert.equal(chat.status, 200);
    const id = chat.headers.get("x-request-id")!;
    assert.match(id, ID);
    assert.equal((await router.record(id)).request_id, id);
    const others: [string, string, number][] = [
      ["GET", "/v1/chat/completions", 405],
      ["GET", "/v1/messages", 405],
      ["GET", "/no/such/route", 404],
      ["GET", "/healthz", 200],
      ["GET", "/readyz", 200],
      ["GET", "/v1/models", 200],
    ];
    for (const [method, path, status] of others) {
      const response = await fetch(`${router.url}${path}`, { method });
      await response.body?.cancel();
      assert.equal(response.status, status, `${method} ${path}`);
      assert.match(response.headers.get("x-request-id") ?? "", ID, `${method} ${path}`);
    }
  } finally {
    await router.close();
  }
});
