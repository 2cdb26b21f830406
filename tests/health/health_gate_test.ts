import assert from "node:assert/strict";
import {
  HealthGate,
  type HealthPolicy,
  healthPolicySchema,
  type HealthSnapshot,
  type MemoryReading,
  parseParameterSize,
} from "../../lib/health/mod.ts";
import { startFakeOllama } from "../fakes/fake_ollama.ts";

const DIGEST_8B = "a".repeat(64);
const DIGEST_32B = "b".repeat(64);

interface OllamaState {
  psMode: "json" | "text" | "404";
  hang: boolean;
}

interface MiniOllama {
  url: string;
  port: number;
  state: OllamaState;
  close(): Promise<void>;
}

/** A minimal Ollama: version, tags and ps, with a switchable `/api/ps` answer and a hanging mode. */
function startMiniOllama(
  port = 0,
  state: OllamaState = { psMode: "json", hang: false },
): Promise<MiniOllama> {
  const { promise, resolve } = Promise.withResolvers<MiniOllama>();
  const closing = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port,
    onListen: () => {},
  }, async (request) => {
    if (state.hang) {
      // Hold the answer, like an overloaded host, until the test closes the server.
      await closing.promise;
      return new Response(null, { status: 503 });
    }
    const path = new URL(request.url).pathname;
    if (path === "/api/version") return Response.json({ version: "0.12.6" });
    if (path === "/api/tags") {
      return Response.json({
        models: [
          { name: "qwen3:8b", model: "qwen3:8b", digest: DIGEST_8B, details: { parameter_size: "8.2B" } },
          {
            name: "qwen2.5:32b",
            model: "qwen2.5:32b",
            digest: DIGEST_32B,
            details: { parameter_size: "32.8B" },
          },
          { name: "tiny", model: "tiny", digest: "c".repeat(64), details: { parameter_size: "567M" } },
        ],
      });
    }
    if (path === "/api/ps") {
      if (state.psMode === "text") return new Response("ok", { headers: { "content-type": "text/plain" } });
      if (state.psMode === "404") return new Response("404 page not found", { status: 404 });
      return Response.json({ models: [{ name: "qwen3:8b", model: "qwen3:8b", size_vram: 1 }] });
    }
    return new Response("not found", { status: 404 });
  });
  const addr = server.addr as Deno.NetAddr;
  resolve({
    url: `http://127.0.0.1:${addr.port}`,
    port: addr.port,
    state,
    close: () => {
      closing.resolve();
      return server.shutdown();
    },
  });
  return promise;
}

function policy(overrides: Record<string, unknown> = {}): HealthPolicy {
  return healthPolicySchema.parse(overrides);
}

const CALM_MEMORY: MemoryReading = { total: 16 * 2 ** 30, available: 8 * 2 ** 30, swapTotal: 0, swapFree: 0 };

/** A port nothing listens on: bind one, note it, free it. */
async function closedPortUrl(): Promise<string> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  listener.close();
  await Promise.resolve();
  return `http://127.0.0.1:${port}`;
}

Deno.test("health policy schema", async (t) => {
  await t.step("an empty policy gets every documented default", () => {
    assert.deepEqual(healthPolicySchema.parse({}), {
      probe_interval_ms: 2000,
      probe_timeout_ms: 1000,
      memory_used_pct_max: 95,
      swap_used_mb_max: 2048,
      circuit: { failure_threshold: 3, cooldown_ms: 5000, success_threshold: 2 },
      heavy_param_threshold_b: 14,
    });
  });
  await t.step("a misspelled field is rejected instead of silently ignored", () => {
    assert.throws(() => healthPolicySchema.parse({ probe_intervall_ms: 5 }));
  });
});

Deno.test("parameter sizes from /api/tags become billions", async (t) => {
  const table: [unknown, number | null][] = [
    ["567M", 0.567],
    ["8.2B", 8.2],
    ["32.8B", 32.8],
    ["70B", 70],
    ["7b", 7],
    ["1.5T", 1500],
    ["137K", 0.000137],
    ["", null],
    ["8.2", null],
    ["lots", null],
    [undefined, null],
    [42, null],
  ];
  for (const [input, expected] of table) {
    await t.step(`${JSON.stringify(input)} → ${expected}`, () => {
      const got = parseParameterSize(input);
      if (expected === null) assert.equal(got, null);
      else assert.ok(got !== null && Math.abs(got - expected) < 1e-12, `got ${got}`);
    });
  }
});

Deno.test("health gate against a live Ollama", async (t) => {
  const ollama = await startMiniOllama();
  const gate = new HealthGate({
    ollamaUrl: ollama.url,
    policy: policy({ heavy_param_threshold_b: 14 }),
    heavyModels: ["qwen3:8b-special"],
    readMemory: () => CALM_MEMORY,
  });
  try {
    await t.step("before the first probe the host is unknown, not fit", () => {
      const snap = gate.snapshot();
      assert.equal(snap.state, "unknown");
      assert.deepEqual(snap.reasons, ["NOT_PROBED_YET"]);
      assert.equal(snap.age_ms, -1);
    });

    await t.step("a reachable host is fit and its installed models are known", async () => {
      await gate.probeNow();
      const snap = gate.snapshot();
      assert.equal(snap.state, "fit");
      assert.deepEqual(snap.reasons, []);
      assert.equal(snap.circuit, "closed");
      assert.equal(snap.ollama_version, "0.12.6");
      assert.ok(snap.age_ms >= 0);
      assert.equal(snap.memory_used_pct, 50);
      assert.equal(snap.swap_used_mb, 0);
      assert.deepEqual(snap.loaded, ["qwen3:8b"]);
      assert.deepEqual(snap.installed.map((m) => [m.name, m.parameter_size_b]), [
        ["qwen3:8b", 8.2],
        ["qwen2.5:32b", 32.8],
        ["tiny", 0.567],
      ]);
      assert.deepEqual(gate.installedModels(), ["qwen3:8b", "qwen2.5:32b", "tiny"]);
    });

    await t.step("models at or above the size threshold, or listed by the policy, are heavy", () => {
      assert.equal(gate.isHeavy("qwen2.5:32b"), true);
      assert.equal(gate.isHeavy("qwen3:8b"), false);
      assert.equal(gate.isHeavy("qwen3:8b-special"), true);
      assert.equal(gate.isHeavy("never-installed"), false);
    });

    await t.step("the digest of an installed model pins its weights; a bare name means :latest", () => {
      assert.equal(gate.modelDigest("qwen3:8b"), DIGEST_8B);
      assert.equal(gate.modelDigest("tiny:latest"), "c".repeat(64));
      assert.equal(gate.modelDigest("missing"), null);
    });

    await t.step("an /api/ps that answers plain text or 404 does not make the host unfit", async () => {
      ollama.state.psMode = "text";
      await gate.probeNow();
      assert.equal(gate.snapshot().state, "fit");
      assert.equal(gate.snapshot().loaded, null);
      ollama.state.psMode = "404";
      await gate.probeNow();
      assert.equal(gate.snapshot().state, "fit");
      ollama.state.psMode = "json";
    });

    await t.step("a host that stops answering is unfit with OLLAMA_PROBE_TIMEOUT", async () => {
      const slowGate = new HealthGate({
        ollamaUrl: ollama.url,
        policy: policy({ probe_timeout_ms: 50 }),
        readMemory: () => CALM_MEMORY,
      });
      ollama.state.hang = true;
      try {
        const probing = slowGate.probeNow();
        // The request path reads the snapshot while the probe hangs: it must answer at once.
        assert.equal(slowGate.snapshot().state, "unknown");
        await probing;
        assert.equal(slowGate.snapshot().state, "unfit");
        assert.deepEqual(slowGate.snapshot().reasons, ["OLLAMA_PROBE_TIMEOUT"]);
      } finally {
        ollama.state.hang = false;
        await slowGate.stop();
      }
    });
  } finally {
    await gate.stop();
    await ollama.close();
  }
});

Deno.test("health gate when Ollama goes away and comes back", async (t) => {
  await t.step("a host that is down is unfit with OLLAMA_UNREACHABLE", async () => {
    const gate = new HealthGate({
      ollamaUrl: await closedPortUrl(),
      policy: policy(),
      readMemory: () => CALM_MEMORY,
    });
    await gate.probeNow();
    const snap = gate.snapshot();
    assert.equal(snap.state, "unfit");
    assert.deepEqual(snap.reasons, ["OLLAMA_UNREACHABLE"]);
    assert.equal(snap.ollama_version, null);
    await gate.stop();
  });

  await t.step("the probe loop sees the host leave and return within one probe interval", async () => {
    let ollama = await startMiniOllama();
    const port = ollama.port;
    const waiters: { want: (s: HealthSnapshot) => boolean; resolve: (s: HealthSnapshot) => void }[] = [];
    const waitFor = (want: (s: HealthSnapshot) => boolean) => {
      const { promise, resolve } = Promise.withResolvers<HealthSnapshot>();
      waiters.push({ want, resolve });
      return promise;
    };
    const gate = new HealthGate({
      ollamaUrl: `127.0.0.1:${port}`, // bare host:port, as OLLAMA_HOST allows
      policy: policy({ probe_interval_ms: 25, probe_timeout_ms: 500 }),
      readMemory: () => CALM_MEMORY,
      onChange: (snap) => {
        for (const w of waiters.splice(0)) w.want(snap) ? w.resolve(snap) : waiters.push(w);
      },
    });
    try {
      const up = waitFor((s) => s.state === "fit");
      gate.start();
      await up;
      const down = waitFor((s) => s.reasons.includes("OLLAMA_UNREACHABLE"));
      await ollama.close();
      assert.equal((await down).state, "unfit");
      const back = waitFor((s) => s.state === "fit");
      ollama = await startMiniOllama(port);
      const snap = await back;
      assert.equal(snap.ollama_version, "0.12.6");
    } finally {
      await gate.stop();
      await ollama.close();
    }
  });
});

Deno.test("host memory and swap pressure", async (t) => {
  const ollama = await startMiniOllama();
  let memory: MemoryReading = CALM_MEMORY;
  const gate = new HealthGate({ ollamaUrl: ollama.url, policy: policy(), readMemory: () => memory });
  try {
    await t.step("memory above memory_used_pct_max makes the host unfit with MEMORY_PRESSURE", async () => {
      memory = { total: 1000, available: 30, swapTotal: 0, swapFree: 0 };
      await gate.probeNow();
      const snap = gate.snapshot();
      assert.equal(snap.state, "unfit");
      assert.deepEqual(snap.reasons, ["MEMORY_PRESSURE"]);
      assert.equal(snap.memory_used_pct, 97);
    });
    await t.step("swap above swap_used_mb_max makes the host unfit with SWAP_PRESSURE", async () => {
      memory = { total: 1000, available: 500, swapTotal: 4096 * 2 ** 20, swapFree: 1024 * 2 ** 20 };
      await gate.probeNow();
      const snap = gate.snapshot();
      assert.equal(snap.state, "unfit");
      assert.deepEqual(snap.reasons, ["SWAP_PRESSURE"]);
      assert.equal(snap.swap_used_mb, 3072);
    });
    await t.step("both at once report both reasons", async () => {
      memory = { total: 1000, available: 10, swapTotal: 4096 * 2 ** 20, swapFree: 0 };
      await gate.probeNow();
      assert.deepEqual(gate.snapshot().reasons, ["MEMORY_PRESSURE", "SWAP_PRESSURE"]);
    });
    await t.step("pressure relieved makes the host fit again on the next probe", async () => {
      memory = CALM_MEMORY;
      await gate.probeNow();
      assert.equal(gate.snapshot().state, "fit");
    });
    await t.step("an unreadable memory reading (no --allow-sys) does not make the host unfit", async () => {
      const blind = new HealthGate({
        ollamaUrl: ollama.url,
        policy: policy(),
        readMemory: () => {
          throw new Deno.errors.NotCapable("no sys");
        },
      });
      await blind.probeNow();
      assert.equal(blind.snapshot().state, "fit");
      assert.equal(blind.snapshot().memory_used_pct, null);
      await blind.stop();
    });
  } finally {
    await gate.stop();
    await ollama.close();
  }
});

Deno.test("circuit breaker fed by the request path", async (t) => {
  const ollama = await startMiniOllama();
  let clock = 1_000_000;
  const changes: string[] = [];
  const gate = new HealthGate({
    ollamaUrl: ollama.url,
    policy: policy({ circuit: { failure_threshold: 3, cooldown_ms: 5000, success_threshold: 2 } }),
    readMemory: () => CALM_MEMORY,
    now: () => clock,
    onChange: (s) => changes.push(`${s.state}/${s.circuit}`),
  });
  try {
    await gate.probeNow();
    assert.equal(gate.snapshot().state, "fit");

    await t.step("fewer failures than the threshold keep local traffic flowing", () => {
      gate.recordFailure("timeout");
      gate.recordFailure("server_error");
      assert.equal(gate.snapshot().circuit, "closed");
      assert.equal(gate.snapshot().state, "fit");
    });

    await t.step("a success resets the count of consecutive failures", () => {
      gate.recordSuccess();
      gate.recordFailure("busy");
      gate.recordFailure("busy");
      assert.equal(gate.snapshot().circuit, "closed");
    });

    await t.step("N consecutive failures open the circuit and the host is unfit at once", () => {
      gate.recordFailure("timeout");
      const snap = gate.snapshot();
      assert.equal(snap.circuit, "open");
      assert.equal(snap.state, "unfit");
      assert.deepEqual(snap.reasons, ["CIRCUIT_OPEN"]);
      assert.equal(gate.tryAcquireHalfOpenTrial(), false);
    });

    await t.step("after the cooldown the circuit is half-open and fit", () => {
      clock += 4999;
      assert.equal(gate.snapshot().circuit, "open");
      clock += 1;
      const snap = gate.snapshot();
      assert.equal(snap.circuit, "half_open");
      assert.equal(snap.state, "fit");
    });

    await t.step("half-open admits exactly one trial request at a time", () => {
      assert.equal(gate.tryAcquireHalfOpenTrial(), true);
      assert.equal(gate.tryAcquireHalfOpenTrial(), false);
      assert.equal(gate.tryAcquireHalfOpenTrial(), false);
    });

    await t.step("success_threshold successes close the circuit", () => {
      gate.recordSuccess();
      assert.equal(gate.snapshot().circuit, "half_open");
      assert.equal(gate.tryAcquireHalfOpenTrial(), true);
      gate.recordSuccess();
      assert.equal(gate.snapshot().circuit, "closed");
      assert.equal(gate.tryAcquireHalfOpenTrial(), false);
    });

    await t.step("a failure of the half-open trial reopens the circuit", () => {
      for (let i = 0; i < 3; i++) gate.recordFailure("connect");
      clock += 5000;
      assert.equal(gate.tryAcquireHalfOpenTrial(), true);
      gate.recordFailure("timeout");
      const snap = gate.snapshot();
      assert.equal(snap.circuit, "open");
      assert.equal(snap.state, "unfit");
      clock += 4999;
      assert.equal(gate.snapshot().circuit, "open", "the cooldown restarts at the reopening");
    });

    await t.step("a trial that ends without a verdict can be handed back", () => {
      clock += 1;
      assert.equal(gate.tryAcquireHalfOpenTrial(), true);
      gate.releaseHalfOpenTrial();
      assert.equal(gate.tryAcquireHalfOpenTrial(), true);
      gate.releaseHalfOpenTrial();
    });

    await t.step("every state change is reported through onChange", () => {
      assert.deepEqual(changes, [
        "fit/closed",
        "unfit/open",
        "fit/half_open",
        "fit/closed",
        "unfit/open",
        "fit/half_open",
        "unfit/open",
        "fit/half_open",
      ]);
    });
  } finally {
    await gate.stop();
    await ollama.close();
  }
});

Deno.test("a probe that finds the host back counts toward closing the circuit", async () => {
  const ollama = await startMiniOllama();
  const clock = 0;
  const gate = new HealthGate({
    ollamaUrl: ollama.url,
    policy: policy({ circuit: { failure_threshold: 2, cooldown_ms: 60_000, success_threshold: 2 } }),
    readMemory: () => CALM_MEMORY,
    now: () => clock,
  });
  try {
    await gate.probeNow();
    gate.recordFailure("connect");
    gate.recordFailure("connect");
    assert.equal(gate.snapshot().circuit, "open");
    // Long before the cooldown, the probe proves the host reachable: one success toward closing.
    await gate.probeNow();
    assert.equal(gate.snapshot().circuit, "half_open");
    assert.equal(gate.tryAcquireHalfOpenTrial(), true);
    gate.recordSuccess();
    assert.equal(gate.snapshot().circuit, "closed");
    assert.equal(gate.snapshot().state, "fit");
    // A probe without an outage in between is no evidence about slow inference: it does not count.
    gate.recordFailure("timeout");
    gate.recordFailure("timeout");
    await gate.probeNow();
    assert.equal(gate.snapshot().circuit, "open");
  } finally {
    await gate.stop();
    await ollama.close();
  }
});

Deno.test("stopping the gate", async (t) => {
  await t.step("stop() clears the loop's timer (the sanitizers check)", async () => {
    const ollama = await startMiniOllama();
    const probed = Promise.withResolvers<void>();
    const gate = new HealthGate({
      ollamaUrl: ollama.url,
      policy: policy({ probe_interval_ms: 60_000 }),
      readMemory: () => CALM_MEMORY,
      onChange: () => probed.resolve(),
    });
    gate.start();
    gate.start(); // a second start is harmless
    await probed.promise;
    await gate.stop();
    await ollama.close();
  });

  await t.step("stop() aborts a probe that is still waiting for the host", async () => {
    const ollama = await startMiniOllama(0, { psMode: "json", hang: true });
    const gate = new HealthGate({
      ollamaUrl: ollama.url,
      policy: policy({ probe_timeout_ms: 60_000 }),
      readMemory: () => CALM_MEMORY,
    });
    gate.start();
    await gate.stop();
    assert.equal(gate.snapshot().state, "unknown", "an aborted probe leaves no verdict");
    await ollama.close();
  });

  await t.step("an injected timer is cancelled by stop()", async () => {
    const ollama = await startMiniOllama();
    const scheduled: { fn: () => void; cancelled: boolean }[] = [];
    const probed = Promise.withResolvers<void>();
    const gate = new HealthGate({
      ollamaUrl: ollama.url,
      policy: policy(),
      readMemory: () => CALM_MEMORY,
      onChange: () => probed.resolve(),
      setTimer: (fn) => {
        const entry = { fn, cancelled: false };
        scheduled.push(entry);
        return () => (entry.cancelled = true);
      },
    });
    gate.start();
    await probed.promise;
    // The next probe is scheduled once the current one has finished.
    while (scheduled.length === 0) await new Promise((r) => queueMicrotask(() => r(undefined)));
    await gate.stop();
    assert.equal(scheduled.length, 1);
    assert.equal(scheduled[0].cancelled, true);
    await ollama.close();
  });
});

Deno.test("health gate against the shared fake Ollama", async (t) => {
  const ollama = startFakeOllama();
  const gate = new HealthGate({ ollamaUrl: ollama.url, policy: policy(), readMemory: () => CALM_MEMORY });
  try {
    await t.step("the fake's host is fit and its 32B model is heavy", async () => {
      await gate.probeNow();
      assert.equal(gate.snapshot().state, "fit");
      assert.equal(gate.isHeavy("qwen3:32b"), true);
      assert.equal(gate.isHeavy("qwen3:8b"), false);
      assert.match(gate.modelDigest("qwen3:8b") ?? "", /^[0-9a-f]{64}$/);
    });
    await t.step("stopped it is unreachable; restarted it is fit on the next probe", async () => {
      await ollama.stop();
      await gate.probeNow();
      assert.deepEqual(gate.snapshot().reasons, ["OLLAMA_UNREACHABLE"]);
      ollama.restart();
      await gate.probeNow();
      assert.equal(gate.snapshot().state, "fit");
    });
  } finally {
    await gate.stop();
    await ollama.close();
  }
});
