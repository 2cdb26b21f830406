/**
 * Several local hosts through `deno task serve`: OLLAMA_HOST lists two fake Ollamas. A user notices which
 * host served (the EDR says), that a host without the model or a host that went away is passed over
 * before any cloud, that each host has its own heavy slot, and that a record served on the second host
 * replays to MATCH there.
 */
import assert from "node:assert/strict";
import { edrPath, type EdrRecord } from "../../lib/edr/mod.ts";
import { defaultOllamaModels } from "../fakes/fake_ollama.ts";
import { policyWith, runTask, type ServedRouter, startServe } from "./serve_harness.ts";

type Json = Record<string, unknown>;

async function chat(
  router: ServedRouter,
  body: Json,
): Promise<{ status: number; requestId: string; json: Json }> {
  const response = await fetch(`${router.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: "Which host are you?" }], ...body }),
  });
  const json = await response.json() as Json;
  return { status: response.status, requestId: response.headers.get("x-request-id") ?? "", json };
}

/** Starts the router on two fake Ollamas and waits until it logged both hosts fit. */
async function startTwoHosts(options: Parameters<typeof startServe>[0] = {}): Promise<ServedRouter> {
  const router = await startServe(options);
  try {
    for (const o of router.ollamas) await router.waitForOutput(new RegExp(`local health fit on ${o.url} `));
  } catch (error) {
    await router.close();
    throw error;
  }
  return router;
}

Deno.test("two local hosts: the model's host serves, slots are per host, records replay", async (t) => {
  // Host 1 has only the heavy deep model; host 2 has every default model.
  const heavyOnly = defaultOllamaModels().filter((m) => m.name === "qwen3:32b");
  const router = await startTwoHosts({ ollamas: [{ models: heavyOnly }, {}] });
  const [h1, h2] = router.ollamas.map((o) => o.url);
  try {
    let servedOnTwo: EdrRecord | null = null;

    await t.step(
      "a model installed only on the second host is served there, and the EDR says so",
      async () => {
        const answer = await chat(router, { model: "auto" });
        assert.equal(answer.status, 200, JSON.stringify(answer.json));
        const record = await router.record(answer.requestId);
        assert.equal(record.decision.provider, "local");
        assert.equal(record.decision.model, "qwen3:8b");
        assert.equal(record.decision.local_host, h2);
        assert.equal(record.decision.path, "primary");
        assert.equal(record.candidates[0].local_host, h2);
        assert.ok(record.constraints_applied.includes(`local_host_skipped:${h1}:LOCAL_MODEL_NOT_INSTALLED`));
        assert.deepEqual(record.decision_inputs.hosts?.map((h) => h.host), [h1, h2]);
        assert.deepEqual(record.attempts.map((a) => [a.local_host, a.outcome]), [[h2, "ok"]]);
        assert.equal(router.ollamas[0].requests.length, 0);
        assert.equal(router.ollamas[1].requests.length, 1);
        servedOnTwo = record;
      },
    );

    await t.step("/readyz and /metrics report each host", async () => {
      const ready = await (await fetch(`${router.url}/readyz`)).json();
      assert.deepEqual(ready.hosts.map((h: Json) => [h.host, (h.health as Json).state]), [[h1, "fit"], [
        h2,
        "fit",
      ]]);
      const metrics = await (await fetch(`${router.url}/metrics`)).text();
      for (const host of [h1, h2]) {
        assert.match(metrics, new RegExp(`hi_local_host_health_state\\{host="${host}",state="fit"\\} 1`));
        assert.match(metrics, new RegExp(`hi_local_host_slot_busy\\{host="${host}"\\} 0`));
      }
      // GET /v1/models lists what any host has, each model once.
      const models = await (await fetch(`${router.url}/v1/models`)).json();
      const local = models.data.filter((m: Json) => m.owned_by === "local").map((m: Json) => m.id);
      assert.deepEqual(local, ["qwen3:32b", "qwen3:8b", "llama3.2:1b"]);
    });

    await t.step(
      "a heavy request holds host 1's slot while a heavy request runs on host 2 at once",
      async () => {
        const hold = router.ollamas[0].hold();
        const first = chat(router, { model: "auto", routing_contract: { latency: "batch" } });
        try {
          await router.ollamas[0].waitForInFlight("qwen3:32b", 1);
          const second = await chat(router, { model: "auto", routing_contract: { latency: "batch" } });
          assert.equal(second.status, 200, JSON.stringify(second.json));
          const record = await router.record(second.requestId);
          assert.equal(record.decision.local_host, h2);
          assert.deepEqual(record.slot, {
            heavy: true,
            outcome: "acquired",
            queue_depth_at_entry: 0,
            waited_ms: 0,
          });
          // decide() saw host 1's slot held and sent the heavy work to the free one.
          assert.equal(record.decision_inputs.hosts?.[0].slot.busy, true);
          assert.equal(record.decision_inputs.hosts?.[1].slot.busy, false);
          assert.equal(
            router.ollamas[0].inFlight.get("qwen3:32b"),
            1,
            "host 1 still holds the first request",
          );
        } finally {
          hold.release();
        }
        const done = await first;
        assert.equal(done.status, 200);
        const record = await router.record(done.requestId);
        assert.equal(record.decision.local_host, h1);
        assert.equal(record.slot?.outcome, "acquired");
      },
    );

    await t.step("deno task replay re-executes the second host's record there, to MATCH", async () => {
      const record = servedOnTwo!;
      const before = router.ollamas[1].requests.length;
      const { code, stdout, output } = await runTask(
        ["replay", "--json", `${router.artifactsDir}/${edrPath(record)}`],
        { OLLAMA_HOST: `${h1},${h2}`, HI_ARTIFACTS_DIR: router.artifactsDir },
      );
      const report = JSON.parse(stdout || "{}");
      assert.equal(report.status, "MATCH", output);
      assert.equal(report.checks.find((c: Json) => c.name === "decision").status, "pass");
      assert.equal(code, 0);
      assert.equal(router.ollamas[1].requests.length, before + 1);
    });

    await t.step("the explorer's Replay button re-executes it on the second host too, to MATCH", async () => {
      const [before1, before2] = router.ollamas.map((o) => o.requests.length);
      const response = await fetch(`${router.url}/api/records/${servedOnTwo!.request_id}/replay`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: "{}",
      });
      const { report } = await response.json();
      assert.equal(response.status, 200);
      assert.equal(report.status, "MATCH", JSON.stringify(report));
      assert.equal(router.ollamas[0].requests.length, before1, "host 1 never saw the replay");
      assert.equal(router.ollamas[1].requests.length, before2 + 1);
    });

    await t.step("verify accepts the several-host records", async () => {
      await router.stop();
      const { code, output } = await runTask(["verify"], { HI_ARTIFACTS_DIR: router.artifactsDir });
      assert.equal(code, 0, output);
    });
  } finally {
    await router.close();
  }
});

Deno.test("two local hosts: when the first goes away, the second serves before any cloud; circuits are per host", async () => {
  // A long probe interval: the router learns that host 1 is gone from the request itself.
  const policy = policyWith({
    health: { probe_interval_ms: 600_000 },
  });
  const router = await startTwoHosts({ ollamas: [{}, {}], policy });
  const [h1, h2] = router.ollamas.map((o) => o.url);
  try {
    await router.ollamas[0].stop();
    const answer = await chat(router, { model: "auto", stream: false });
    assert.equal(answer.status, 200, JSON.stringify(answer.json));
    const record = await router.record(answer.requestId);
    assert.equal(record.decision.provider, "local");
    assert.equal(record.decision.local_host, h2);
    assert.equal(record.decision.path, "fallback");
    assert.deepEqual(
      record.attempts.map((a) => [a.provider, a.local_host, a.outcome, a.error_code]),
      [["local", h1, "fallback", "UPSTREAM_CONNECT_FAILED"], ["local", h2, "ok", null]],
    );
    assert.equal(router.openai.requests.length + router.anthropic.requests.length, 0);

    // A stream falls back the same way: nothing reached the client before host 1 failed.
    const stream = await fetch(`${router.url}/v1/chat/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({
        model: "auto",
        stream: true,
        messages: [{ role: "user", content: "stream it" }],
      }),
    });
    const text = await stream.text();
    assert.equal(stream.status, 200, text);
    assert.match(text, /data: \[DONE\]/);
    const streamed = await router.record(stream.headers.get("x-request-id")!);
    assert.deepEqual(streamed.attempts.map((a) => [a.local_host, a.outcome]), [[h1, "fallback"], [h2, "ok"]]);

    // A third failure opens host 1's circuit (failure_threshold 3); host 2's stays closed, and the next
    // request is decided around host 1 without calling it.
    const third = await chat(router, { model: "auto" });
    assert.equal(third.status, 200);
    const metrics = await (await fetch(`${router.url}/metrics`)).text();
    assert.match(metrics, new RegExp(`hi_local_host_circuit_state\\{host="${h1}",circuit="open"\\} 1`));
    assert.match(metrics, new RegExp(`hi_local_host_circuit_state\\{host="${h2}",circuit="closed"\\} 1`));
    const after = await chat(router, { model: "auto" });
    const decided = await router.record(after.requestId);
    assert.ok(
      decided.constraints_applied.includes(`local_host_skipped:${h1}:LOCAL_UNFIT+LOCAL_CIRCUIT_OPEN`),
    );
    assert.deepEqual(decided.attempts.map((a) => [a.local_host, a.outcome]), [[h2, "ok"]]);
    assert.equal(decided.decision.path, "primary");
  } finally {
    await router.close();
  }
});
