/**
 * The routing contract and the server policy at the HTTP boundary, with the router run as users run it
 * (`deno task serve`): the contract can only tighten whichever door it comes through (body field or
 * `x-routing-contract` header), and a policy file that names only some sections keeps the defaults of the
 * rest, while a policy under which nothing could be served never reports ready.
 */
import assert from "node:assert/strict";
import { policyWith, type ServedRouter, startServe } from "../e2e/serve_harness.ts";

type Endpoint = "/v1/chat/completions" | "/v1/messages";
const ENDPOINTS: Endpoint[] = ["/v1/chat/completions", "/v1/messages"];

interface Sent {
  status: number;
  id: string;
  // deno-lint-ignore no-explicit-any
  body: any;
}

/** Posts one short chat turn to `endpoint`, with an optional body contract and contract header. */
async function chat(
  router: ServedRouter,
  endpoint: Endpoint,
  prompt: string,
  options: { header?: unknown; body?: Record<string, unknown> } = {},
): Promise<Sent> {
  const headers: Record<string, string> = { "content-type": "application/json" };
  if (options.header !== undefined) headers["x-routing-contract"] = JSON.stringify(options.header);
  const turn = { model: "auto", messages: [{ role: "user", content: prompt }] };
  const payload = endpoint === "/v1/messages" ? { ...turn, max_tokens: 64 } : turn;
  if (endpoint === "/v1/messages") headers["anthropic-version"] = "2023-06-01";
  const response = await fetch(`${router.url}${endpoint}`, {
    method: "POST",
    headers,
    body: JSON.stringify({ ...payload, ...options.body }),
  });
  return { status: response.status, id: response.headers.get("x-request-id")!, body: await response.json() };
}

/** How many chat calls each fake upstream has received. */
function upstreamCalls(router: ServedRouter) {
  return {
    local: router.ollama.requests.length,
    openai: router.openai.requests.length,
    anthropic: router.anthropic.requests.length,
  };
}

/** The error's message in either dialect's shape. */
function errorMessage(sent: Sent): string {
  return sent.body.error.message;
}

/** A port on 127.0.0.1 that nothing listens on. */
function closedPort(): number {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  return port;
}

Deno.test("the routing contract can only tighten, whichever door it comes through", async (t) => {
  const router = await startServe();
  try {
    for (const endpoint of ENDPOINTS) {
      await t.step(
        `${endpoint}: SENSITIVE in the header and PUBLIC in the body is a 400 that calls no upstream`,
        async () => {
          const before = upstreamCalls(router);
          const sent = await chat(router, endpoint, "conflicting doors", {
            header: { classification: "SENSITIVE" },
            body: { routing_contract: { classification: "PUBLIC" } },
          });
          assert.equal(sent.status, 400, JSON.stringify(sent.body));
          if (endpoint === "/v1/chat/completions") {
            assert.equal(sent.body.error.code, "ROUTING_CONTRACT_CONFLICT");
            assert.equal(sent.body.error.param, "routing_contract");
          } else {
            assert.equal(sent.body.type, "error");
            assert.equal(sent.body.error.type, "invalid_request_error");
          }
          assert.match(errorMessage(sent), /send it in one place or make them agree/);
          assert.deepEqual(upstreamCalls(router), before, "no upstream was called");
          const record = await router.record(sent.id);
          assert.equal(record.endpoint, endpoint);
          assert.equal(record.failure?.type, "validation_error");
          assert.equal(record.failure?.stage, "parse");
          assert.deepEqual(record.attempts, []);
        },
      );

      await t.step(
        `${endpoint}: PUBLIC in the header cannot loosen SENSITIVE in the body either`,
        async () => {
          const before = upstreamCalls(router);
          const sent = await chat(router, endpoint, "conflicting doors, reversed", {
            header: { classification: "PUBLIC" },
            body: { routing_contract: { classification: "SENSITIVE" } },
          });
          assert.equal(sent.status, 400, JSON.stringify(sent.body));
          assert.match(errorMessage(sent), /x-routing-contract header with different values/);
          assert.deepEqual(upstreamCalls(router), before);
          assert.equal((await router.record(sent.id)).failure?.stage, "parse");
        },
      );

      await t.step(`${endpoint}: SENSITIVE in the header with a null body contract stays local`, async () => {
        const before = upstreamCalls(router);
        const sent = await chat(router, endpoint, "null body contract", {
          header: { classification: "SENSITIVE" },
          body: { routing_contract: null },
        });
        assert.equal(sent.status, 200, JSON.stringify(sent.body));
        assert.equal(sent.body.model, "qwen3:8b");
        const after = upstreamCalls(router);
        assert.equal(after.local, before.local + 1);
        assert.equal(after.openai, before.openai, "never the cloud");
        assert.equal(after.anthropic, before.anthropic, "never the cloud");
        const record = await router.record(sent.id);
        assert.equal(record.effective_contract?.classification, "SENSITIVE");
        assert.equal(record.decision.provider, "local");
      });

      await t.step(`${endpoint}: the same contract in both places is accepted`, async () => {
        const contract = { classification: "SENSITIVE", latency: "interactive" };
        const sent = await chat(router, endpoint, "agreeing doors", {
          header: contract,
          // Key order differs: the two are compared as canonical JSON.
          body: { routing_contract: { latency: "interactive", classification: "SENSITIVE" } },
        });
        assert.equal(sent.status, 200, JSON.stringify(sent.body));
        const record = await router.record(sent.id);
        assert.equal(record.effective_contract?.classification, "SENSITIVE");
        assert.equal(record.decision.provider, "local");
      });
    }
  } finally {
    await router.close();
  }
});

Deno.test("SENSITIVE in the header with a null body contract fails closed when local is down", async (t) => {
  const router = await startServe({ env: { OLLAMA_HOST: `127.0.0.1:${closedPort()}` } });
  try {
    await router.waitForOutput(/local health unfit/);
    for (const endpoint of ENDPOINTS) {
      await t.step(`${endpoint}: 503 LOCAL_UNAVAILABLE_FOR_SENSITIVE, and no cloud call`, async () => {
        const sent = await chat(router, endpoint, "sensitive while local is down", {
          header: { classification: "SENSITIVE" },
          body: { routing_contract: null },
        });
        assert.equal(sent.status, 503, JSON.stringify(sent.body));
        if (endpoint === "/v1/chat/completions") {
          assert.equal(sent.body.error.code, "LOCAL_UNAVAILABLE_FOR_SENSITIVE");
        }
        assert.match(errorMessage(sent), /SENSITIVE requests run only on the local host/);
        assert.equal(router.openai.requests.length, 0);
        assert.equal(router.anthropic.requests.length, 0);
        const record = await router.record(sent.id);
        assert.equal(record.failure?.type, "policy_rejection");
        assert.ok(record.decision_factors.includes("REJECTED_LOCAL_UNAVAILABLE_FOR_SENSITIVE"));
      });
    }
  } finally {
    await router.close();
  }
});

Deno.test("a policy file that names only authority keeps the built-in models and defaults", async (t) => {
  const router = await startServe({
    policy: { policy_version: "ops-authority-only", authority: { required: true, max_ttl_s: 600 } },
  });
  const authority = (scope: string) => ({
    issued_by: "ops",
    scope: [scope],
    ttl: 60,
    lease_id: crypto.randomUUID(),
  });
  try {
    await t.step("readyz says ready", async () => {
      const response = await fetch(`${router.url}/readyz`);
      const body = await response.json();
      assert.equal(response.status, 200, JSON.stringify(body));
      assert.equal(body.ready, true);
    });

    await t.step("/v1/models lists the installed local models and the built-in cloud models", async () => {
      const ids = (await router.client.models.list()).data.map((m) => m.id);
      for (const id of ["qwen3:8b", "claude-sonnet-4-5", "gpt-4o-mini"]) {
        assert.ok(ids.includes(id), `${id} in ${ids}`);
      }
    });

    await t.step("the file's authority section applies: a request without authority is refused", async () => {
      const sent = await chat(router, "/v1/chat/completions", "no authority");
      assert.equal(sent.status, 403, JSON.stringify(sent.body));
      assert.equal(sent.body.error.code, "AUTHORITY_MISSING");
    });

    for (const endpoint of ENDPOINTS) {
      await t.step(`${endpoint}: a request is served locally by a model /v1/models lists`, async () => {
        const before = upstreamCalls(router);
        const scope = endpoint === "/v1/messages" ? "messages:create" : "chat:completions";
        const sent = await chat(router, endpoint, "partial policy", {
          body: { authority: authority(scope) },
        });
        assert.equal(sent.status, 200, JSON.stringify(sent.body));
        const listed = (await router.client.models.list()).data.map((m) => m.id);
        assert.ok(listed.includes(sent.body.model), `${sent.body.model} in ${listed}`);
        assert.equal(upstreamCalls(router).local, before.local + 1);
        const record = await router.record(sent.id);
        assert.equal(record.policy_version, "ops-authority-only");
        assert.equal(record.decision.provider, "local");
        assert.equal(record.decision.model, "qwen3:8b");
      });
    }
  } finally {
    await router.close();
  }
});

Deno.test("a policy under which no request could be served is never reported ready", async (t) => {
  await t.step("an explicit empty models list is refused at start with a message naming it", async () => {
    const failed = await startServe({ policy: { policy_version: "ops-empty", models: [] } }).then(
      async (router) => {
        await router.close();
        return null;
      },
      (error: Error) => error,
    );
    assert.ok(failed, "deno task serve must not start");
    assert.match(failed.message, /cannot start: .*policy's models list no model/);
    assert.match(failed.message, /add one to models, or leave models out/);
  });

  await t.step("a cloud-only policy without that cloud's key: readyz 503 says which key to set", async () => {
    const router = await startServe({
      policy: { policy_version: "ops-cloud-only", defaults: { provider_allowlist: ["anthropic"] } },
      noCloudKeys: true,
    });
    try {
      const response = await fetch(`${router.url}/readyz`);
      const body = await response.json();
      assert.equal(response.status, 503, JSON.stringify(body));
      assert.equal(body.ready, false);
      assert.match(body.reason, /set ANTHROPIC_API_KEY/);
      const sent = await chat(router, "/v1/chat/completions", "nowhere to go");
      assert.equal(sent.status, 503);
      assert.equal(sent.body.error.code, "NO_PROVIDER_AVAILABLE");
      assert.equal(upstreamCalls(router).local, 0);
    } finally {
      await router.close();
    }
  });
});

Deno.test("SENSITIVE finding local gone before the probe noticed gets the same 503 as after it", async (t) => {
  // Probes far apart: the request, not the probe, is first to find Ollama gone.
  const router = await startServe({
    policy: policyWith({ health: { probe_interval_ms: 3_600_000 } }),
  });
  try {
    await router.waitForOutput(/local health fit/);
    await router.ollama.stop();
    for (
      const [endpoint, classification] of [
        ["/v1/chat/completions", "SENSITIVE"],
        ["/v1/messages", "SECRET"],
      ] as const
    ) {
      await t.step(
        `${endpoint}, ${classification}: 503 LOCAL_UNAVAILABLE_FOR_${classification}, not a 502`,
        async () => {
          const sent = await chat(router, endpoint, "sensitive while local just went away", {
            body: { routing_contract: { classification } },
          });
          assert.equal(sent.status, 503, JSON.stringify(sent.body));
          assert.equal(sent.body.error.code, `LOCAL_UNAVAILABLE_FOR_${classification}`);
          assert.match(
            errorMessage(sent),
            new RegExp(`${classification} requests run only on the local host`),
          );
          assert.equal(router.openai.requests.length + router.anthropic.requests.length, 0);
          const record = await router.record(sent.id);
          assert.equal(record.failure?.code, `LOCAL_UNAVAILABLE_FOR_${classification}`);
          assert.equal(record.attempts.at(-1)?.error_code, "UPSTREAM_CONNECT_FAILED");
        },
      );
    }
  } finally {
    await router.close();
  }
});
