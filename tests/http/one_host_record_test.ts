/**
 * With one local host the router records and reports exactly as before several hosts existed: no
 * `local_host`, no `decision_inputs.hosts`, no `hosts` in /readyz. In-process (tests/http/harness.ts)
 * because it inspects the raw record text; the several-host behaviour is in tests/e2e/local_hosts_test.ts.
 */
import assert from "node:assert/strict";
import { startHarness } from "./harness.ts";

Deno.test("one local host: the EDR and /readyz carry no several-host members", async () => {
  const h = await startHarness();
  try {
    const { response } = await h.client.chat.completions
      .create({ model: "auto", messages: [{ role: "user", content: "hello" }] })
      .withResponse();
    const record = await h.record(response.headers.get("x-request-id")!);
    assert.equal(record.decision.provider, "local");
    assert.equal(record.decision.path, "primary");
    const text = JSON.stringify(record);
    assert.ok(!text.includes("local_host"), text);
    assert.ok(!("hosts" in record.decision_inputs));
    assert.deepEqual(Object.keys(record.decision_inputs), [
      "authority",
      "features",
      "health",
      "keys",
      "slot",
    ]);
    assert.deepEqual(Object.keys(record.decision), ["model", "path", "protocol", "provider"]);
    const ready = await (await fetch(`${h.router.url}/readyz`)).json();
    assert.ok(!("hosts" in ready));
    assert.equal(h.router.hosts.length, 1);
    const metrics = await (await fetch(`${h.router.url}/metrics`)).text();
    assert.match(metrics, /hi_slot_busy 0/);
    assert.match(metrics, new RegExp(`hi_local_host_slot_busy\\{host="${h.ollama.url}"\\} 0`));
  } finally {
    await h.close();
  }
});
