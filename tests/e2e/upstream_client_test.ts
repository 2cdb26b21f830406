/**
 * HI_UPSTREAM_CLIENT picks how plain-http upstreams are called: our HTTP/1.1 client (the fast path) or
 * fetch (its plain twin). Either way a user gets the same answers and records through `deno task serve`.
 */
import assert from "node:assert/strict";
import { runTask, startServeHealthy } from "./serve_harness.ts";

for (const client of ["http1", "fetch"]) {
  Deno.test(`HI_UPSTREAM_CLIENT=${client}: JSON and streamed answers from Ollama, each with its EDR`, async () => {
    const served = await startServeHealthy({ env: { HI_UPSTREAM_CLIENT: client } });
    try {
      const json = await served.client.chat.completions.create({
        model: "auto",
        messages: [{ role: "user", content: "Say hello." }],
      }).withResponse();
      assert.ok(json.data.choices[0].message.content);
      const stream = await served.client.chat.completions.create({
        model: "auto",
        messages: [{ role: "user", content: "Stream a short answer." }],
        stream: true,
      }).withResponse();
      let text = "";
      for await (const chunk of stream.data) text += chunk.choices[0]?.delta.content ?? "";
      assert.ok(text.length > 0);
      for (const response of [json.response, stream.response]) {
        const record = await served.record(response.headers.get("x-request-id")!);
        assert.equal(record.decision.provider, "local");
        assert.equal(record.attempts.at(-1)?.outcome, "ok");
      }
      assert.equal(served.ollama.requests.length, 2, "both answers came from the fake Ollama");
      // fetch announces the encodings it decodes; our HTTP/1.1 client sends only the adapter's headers.
      const encodings = served.ollama.requestHeaders.map((h) => h.get("accept-encoding"));
      if (client === "fetch") assert.ok(encodings.every((e) => e?.includes("gzip")), String(encodings));
      else assert.deepEqual(encodings, [null, null]);
    } finally {
      await served.close();
    }
  });
}

Deno.test("HI_UPSTREAM_CLIENT with another value is a cannot-start line, exit 1", async () => {
  const { code, output } = await runTask(["serve"], { HI_UPSTREAM_CLIENT: "curl", HI_PORT: "0" });
  assert.equal(code, 1);
  assert.match(output, /cannot start: HI_UPSTREAM_CLIENT must be http1 or fetch, not "curl"/);
  assert.doesNotMatch(output, /\n\s+at /, "no stack trace");
});
