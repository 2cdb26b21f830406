/**
 * Issue 5 acceptance through the real router: the single heavy local slot (wait, spill, refuse, bounded
 * queue, release on disconnect and timeout), light work beside it, the health gate (Ollama down and
 * back, memory pressure, circuit breaker) and the metrics that show it, against the fake upstreams.
 */
// Unit-level (in-process): the steps read the slot queue and circuit state (router.slot/health snapshots),
// inject memory readings and probe on cue; the EDR files users see are covered through deno task serve.
import assert from "node:assert/strict";
import type { EdrRecord } from "../../lib/edr/mod.ts";
import type { MemoryReading } from "../../lib/health/mod.ts";
import type { FakeHold } from "../fakes/fake_ollama.ts";
import { type Harness, type HarnessOptions, startHarness } from "./harness.ts";

const HEAVY = "qwen3:32b";
const LIGHT = "qwen3:8b";
// The background probe would race the steps that call h.probe(); keep it out of the way.
const QUIET_HEALTH = { probe_interval_ms: 3_600_000 };

const userTurn = (text: string) => [{ role: "user", content: text }];

/** A heavy request: the batch latency picks the policy's deep (heavy) local model. */
const heavy = (text: string, extra: Record<string, unknown> = {}) => ({
  model: "auto",
  messages: userTurn(text),
  routing_contract: { latency: "batch" },
  ...extra,
});

/** A light request: interactive latency picks the router model. */
const light = (text: string, extra: Record<string, unknown> = {}) => ({
  model: "auto",
  messages: userTurn(text),
  ...extra,
});

/** What a test looks at of one answer (the body is always read, so no resource leaks). */
interface Answer {
  status: number;
  id: string;
  headers: Headers;
  text: string;
  // deno-lint-ignore no-explicit-any
  json: any;
}

async function send(h: Harness, body: unknown, signal?: AbortSignal): Promise<Answer> {
  const response = await fetch(`${h.router.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
    signal,
  });
  const text = await response.text();
  let json: unknown = null;
  try {
    json = JSON.parse(text);
  } catch {
    // SSE bodies are not JSON.
  }
  return {
    status: response.status,
    id: response.headers.get("x-request-id") ?? "",
    headers: response.headers,
    text,
    json,
  };
}

/** Sends a request whose client can be made to go away; the promise never rejects. */
function abortable(
  h: Harness,
  body: unknown,
): { controller: AbortController; done: Promise<Answer | Error> } {
  const controller = new AbortController();
  const done = send(h, body, controller.signal).catch((e) => e as Error);
  return { controller, done };
}

/** Fires requests at once and counts how many have settled, so a test can wait for the fast ones. */
function burst(h: Harness, bodies: unknown[]): { settled: () => number; all: Promise<Answer[]> } {
  let settled = 0;
  const all = Promise.all(bodies.map((b) => send(h, b).finally(() => settled++)));
  return { settled: () => settled, all };
}

/**
 * Yields to the event loop until a condition on router state holds (router state has no event to await);
 * bounded by wall-clock time so a broken router fails instead of hanging.
 */
async function until(what: string, condition: () => boolean | Promise<boolean>, ms = 15_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((resolve) => setTimeout(resolve, 0));
  }
}

function heavyChatsAtFake(h: Harness): { content: string }[] {
  return h.ollama.requests
    .filter((r) => (r as { model: string }).model === HEAVY)
    .map((r) => ({ content: (r as { messages: { content: string }[] }).messages.at(-1)!.content }));
}

function assertSlotIdle(h: Harness, context = ""): void {
  const snap = h.router.slot.snapshot();
  assert.equal(snap.busy, false, `slot still busy ${context}`);
  assert.equal(snap.queue_depth, 0, `slot queue not empty ${context}`);
}

async function recordsById(h: Harness, answers: Answer[]): Promise<Map<string, EdrRecord>> {
  const all = await h.records();
  const byId = new Map(all.map((r) => [r.request_id, r]));
  for (const a of answers) assert.ok(byId.has(a.id), `an EDR exists for ${a.id}`);
  return byId;
}

const openHolds = new Map<Harness, FakeHold[]>();

/** Holds chat requests at the fake Ollama; `shut()` releases it even when an assertion failed first. */
function holdOllama(h: Harness): FakeHold {
  const hold = h.ollama.hold();
  openHolds.get(h)?.push(hold);
  return hold;
}

/** Releases any hold (so in-flight requests can end) and closes the router and the fakes. */
async function shut(h: Harness): Promise<void> {
  for (const hold of openHolds.get(h) ?? []) hold.release();
  openHolds.delete(h);
  h.ollama.mode = "normal";
  await h.close();
}

async function harness(
  options: HarnessOptions & { policy?: Record<string, unknown> } = {},
): Promise<Harness> {
  const policy = { ...options.policy };
  policy.health = { ...QUIET_HEALTH, ...(policy.health as Record<string, unknown> | undefined) };
  const h = await startHarness({ ...options, policy });
  openHolds.set(h, []);
  return h;
}

Deno.test("twelve simultaneous heavy requests never put two heavy inferences on the local host", async (t) => {
  await t.step("when_busy wait: all wait their turn in FIFO order and succeed locally", async () => {
    const h = await harness({ policy: { slot: { when_busy: "wait", max_queue: 16 } } });
    try {
      const hold = holdOllama(h);
      const requests = burst(h, Array.from({ length: 12 }, (_, i) => heavy(`heavy wait ${i}`)));
      await h.ollama.waitForInFlight(HEAVY, 1);
      await until("eleven heavy requests queued", () => h.router.slot.snapshot().queue_depth === 11);
      assert.equal(h.router.slot.snapshot().busy, true);
      assert.equal(heavyChatsAtFake(h).length, 1, "the queued ones have not reached Ollama");
      hold.release();
      const answers = await requests.all;

      for (const a of answers) {
        assert.equal(a.status, 200, a.text);
        assert.equal(a.json.model, HEAVY);
      }
      assert.equal(h.ollama.maxInFlight.get(HEAVY), 1);
      assert.equal(h.anthropic.requests.length + h.openai.requests.length, 0, "nothing spilled");

      const byId = await recordsById(h, answers);
      const slots = answers.map((a) => byId.get(a.id)!.slot!);
      assert.equal(slots.filter((s) => s.outcome === "acquired").length, 1);
      assert.equal(slots.filter((s) => s.outcome === "waited").length, 11);
      for (const s of slots) {
        assert.equal(s.heavy, true);
        assert.ok(s.waited_ms >= 0);
      }
      const waitedDepths = slots.filter((s) => s.outcome === "waited").map((s) => s.queue_depth_at_entry);
      assert.deepEqual([...waitedDepths].sort((a, b) => a - b), [...Array(11).keys()]);

      // FIFO: Ollama saw the waiters in the order they entered the queue.
      const depthOf = new Map(answers.map((a, i) => [`heavy wait ${i}`, byId.get(a.id)!.slot!]));
      const served = heavyChatsAtFake(h).map((c) => depthOf.get(c.content)!);
      assert.equal(served[0].outcome, "acquired");
      assert.deepEqual(served.slice(1).map((s) => s.queue_depth_at_entry), [...Array(11).keys()]);
      for (const a of answers) {
        const r = byId.get(a.id)!;
        assert.equal(r.decision.path, "primary");
        assert.equal(r.decision.provider, "local");
      }
      assertSlotIdle(h);
    } finally {
      await shut(h);
    }
  });

  await t.step("when_busy spill: the first runs locally and the others go to the cloud at once", async () => {
    const h = await harness({ policy: { slot: { when_busy: "spill" } } });
    try {
      const hold = holdOllama(h);
      const requests = burst(h, Array.from({ length: 12 }, (_, i) => heavy(`heavy spill ${i}`)));
      await h.ollama.waitForInFlight(HEAVY, 1);
      // The eleven spilled answers arrive while the local one is still held.
      await until("eleven spilled answers", () => requests.settled() === 11);
      hold.release();
      const answers = await requests.all;

      for (const a of answers) assert.equal(a.status, 200, a.text);
      assert.equal(answers.filter((a) => a.json.model === HEAVY).length, 1);
      assert.equal(answers.filter((a) => a.json.model === "claude-sonnet-4-5").length, 11);
      assert.equal(h.ollama.maxInFlight.get(HEAVY), 1);
      assert.equal(heavyChatsAtFake(h).length, 1, "spilled requests never touched Ollama");

      const byId = await recordsById(h, answers);
      for (const a of answers.filter((a) => a.json.model !== HEAVY)) {
        const r = byId.get(a.id)!;
        assert.equal(r.decision.provider, "anthropic");
        assert.ok(r.decision_factors.includes("SLOT_BUSY_SPILL"), r.decision_factors.join());
        assert.ok(r.decision_factors.includes("FALLBACK_TO_CLOUD"));
        assert.equal(r.decision_inputs.slot?.busy, true);
        assert.equal(r.decision_inputs.slot?.when_busy, "spill");
        assert.deepEqual(r.attempts.map((x) => x.provider), ["anthropic"]);
        assert.equal(r.slot?.outcome, "spilled", "the EDR slot field says the heavy request spilled");
      }
      const local = byId.get(answers.find((a) => a.json.model === HEAVY)!.id)!;
      assert.equal(local.slot?.outcome, "acquired");
      assertSlotIdle(h);
    } finally {
      await shut(h);
    }
  });

  await t.step("when_busy refuse: the others get 429 with Retry-After and a slot_refused EDR", async () => {
    const h = await harness({ policy: { slot: { when_busy: "refuse", retry_after_s: 3 } } });
    try {
      const hold = holdOllama(h);
      const requests = burst(h, Array.from({ length: 12 }, (_, i) => heavy(`heavy refuse ${i}`)));
      await h.ollama.waitForInFlight(HEAVY, 1);
      await until("eleven refusals", () => requests.settled() === 11);
      hold.release();
      const answers = await requests.all;

      const ok = answers.filter((a) => a.status === 200);
      const refused = answers.filter((a) => a.status === 429);
      assert.equal(ok.length, 1);
      assert.equal(refused.length, 11);
      assert.equal(h.ollama.maxInFlight.get(HEAVY), 1);
      assert.equal(h.anthropic.requests.length + h.openai.requests.length, 0, "refuse never spills");

      const byId = await recordsById(h, answers);
      for (const a of refused) {
        assert.equal(a.headers.get("retry-after"), "3");
        assert.equal(a.headers.get("x-should-retry"), "true");
        assert.equal(a.json.error.code, "SLOT_BUSY");
        const r = byId.get(a.id)!;
        assert.equal(r.failure?.type, "slot_refused");
        assert.equal(r.decision.path, "rejected");
        assert.deepEqual(r.attempts, []);
        assert.ok(r.decision_factors.includes("SLOT_BUSY_REFUSE"));
        assert.equal(r.slot?.outcome, "refused", "the EDR slot field says the heavy request was refused");
      }
      assert.equal(byId.get(ok[0].id)!.slot?.outcome, "acquired");
      assertSlotIdle(h);
    } finally {
      await shut(h);
    }
  });

  await t.step("wait with max_queue 2 and cloud keys: two wait, the queue-full ones spill", async () => {
    const h = await harness({ policy: { slot: { when_busy: "wait", max_queue: 2 } } });
    try {
      const hold = holdOllama(h);
      const requests = burst(h, Array.from({ length: 12 }, (_, i) => heavy(`heavy small queue ${i}`)));
      await h.ollama.waitForInFlight(HEAVY, 1);
      await until("nine spilled answers", () => requests.settled() === 9);
      assert.equal(h.router.slot.snapshot().queue_depth, 2);
      hold.release();
      const answers = await requests.all;

      for (const a of answers) assert.equal(a.status, 200, a.text);
      assert.equal(answers.filter((a) => a.json.model === HEAVY).length, 3);
      assert.equal(h.ollama.maxInFlight.get(HEAVY), 1);
      const byId = await recordsById(h, answers);
      const outcomes = answers.map((a) => byId.get(a.id)!.slot?.outcome).sort();
      assert.deepEqual(outcomes, ["acquired", ...Array(9).fill("spilled"), "waited", "waited"]);
      for (const a of answers.filter((a) => a.json.model !== HEAVY)) {
        assert.ok(byId.get(a.id)!.decision_factors.includes("SLOT_QUEUE_FULL_SPILL"));
      }
      assertSlotIdle(h);
    } finally {
      await shut(h);
    }
  });

  await t.step("wait with max_queue 2 and no cloud keys: the queue-full ones get 429", async () => {
    const h = await harness({ noCloudKeys: true, policy: { slot: { when_busy: "wait", max_queue: 2 } } });
    try {
      const hold = holdOllama(h);
      const requests = burst(h, Array.from({ length: 12 }, (_, i) => heavy(`heavy full ${i}`)));
      await h.ollama.waitForInFlight(HEAVY, 1);
      await until("nine refusals", () => requests.settled() === 9);
      hold.release();
      const answers = await requests.all;

      assert.equal(answers.filter((a) => a.status === 200).length, 3);
      const full = answers.filter((a) => a.status === 429);
      assert.equal(full.length, 9);
      assert.equal(h.ollama.maxInFlight.get(HEAVY), 1);
      const byId = await recordsById(h, answers);
      for (const a of full) {
        assert.equal(a.json.error.code, "SLOT_QUEUE_FULL");
        assert.equal(a.headers.get("retry-after"), "5");
        const r = byId.get(a.id)!;
        assert.equal(r.failure?.type, "slot_refused");
        assert.equal(r.slot?.outcome, "refused");
      }
      assertSlotIdle(h);
    } finally {
      await shut(h);
    }
  });
});

Deno.test("light local work never queues behind heavy work", async () => {
  const h = await harness();
  try {
    const hold = holdOllama(h);
    const first = send(h, heavy("heavy one"));
    await h.ollama.waitForInFlight(HEAVY, 1);
    const second = send(h, heavy("heavy two"));
    await until("a heavy request queued", () => h.router.slot.snapshot().queue_depth === 1);

    const lightAnswer = send(h, light("light one"));
    // The light request reaches Ollama while the heavy slot is held and another heavy request waits.
    await h.ollama.waitForInFlight(LIGHT, 1);
    assert.deepEqual(h.router.slot.snapshot(), {
      busy: true,
      queue_depth: 1,
      max_queue: 8,
      when_busy: "wait",
    });
    hold.release();

    const [a, b, l] = await Promise.all([first, second, lightAnswer]);
    for (const x of [a, b, l]) assert.equal(x.status, 200, x.text);
    assert.equal(l.json.model, LIGHT);
    const r = await h.record(l.id);
    assert.equal(r.slot, null, "light work never touches the slot");
    assert.deepEqual(r.candidates[0], { provider: "local", model: LIGHT, heavy: false });
    assert.equal((await h.record(b.id)).slot?.outcome, "waited");
    assertSlotIdle(h);
  } finally {
    await shut(h);
  }
});

Deno.test("a client that disconnects from a heavy stream frees the slot at once", async () => {
  const h = await harness({ noCloudKeys: true });
  try {
    const hold = holdOllama(h);
    const first = abortable(h, heavy("heavy stream that goes away", { stream: true }));
    await h.ollama.waitForInFlight(HEAVY, 1);
    const second = send(h, heavy("heavy stream next", { stream: true }));
    await until("the next heavy request queued", () => h.router.slot.snapshot().queue_depth === 1);

    first.controller.abort();
    assert.ok((await first.done) instanceof Error);
    // The next heavy request reaches Ollama while the first one's upstream is still held: the slot was
    // handed over on disconnect, not when the upstream would have answered.
    await h.ollama.waitFor(() => heavyChatsAtFake(h).length === 2);
    await h.ollama.waitForAborted(1);
    assert.equal(h.ollama.aborted, 1, "Ollama saw the first request go away");
    hold.release();

    const next = await second;
    assert.equal(next.status, 200);
    assert.match(next.text, /data: \[DONE\]/);
    await until("both EDRs", async () => (await h.records()).length === 2);
    const records = await h.records();
    const gone = records.find((r) => r.request_id !== next.id)!;
    assert.equal(gone.failure?.type, "client_disconnect");
    assert.equal(gone.attempts[0].outcome, "aborted");
    assert.equal(gone.slot?.outcome, "acquired");
    assert.equal((await h.record(next.id)).slot?.outcome, "waited");
    assertSlotIdle(h);
  } finally {
    await shut(h);
  }
});

Deno.test("an upstream that hangs frees the slot at its first-byte timeout", async () => {
  const h = await harness({ noCloudKeys: true, policy: { limits: { first_byte_timeout_ms: 500 } } });
  try {
    h.ollama.mode = "hang";
    const hung = send(h, heavy("heavy that hangs"));
    await h.ollama.waitForInFlight(HEAVY, 1);
    // Only the request already at the fake hangs; the next one is answered normally.
    h.ollama.mode = "normal";
    const next = send(h, heavy("heavy after the hang"));

    const a = await hung;
    assert.equal(a.status, 504, a.text);
    assert.equal(a.json.error.code, "UPSTREAM_TIMEOUT");
    const b = await next;
    assert.equal(b.status, 200, b.text);
    assert.equal(b.json.model, HEAVY);
    await h.ollama.waitForAborted(1);
    const r = await h.record(a.id);
    assert.equal(r.failure?.type, "provider_error");
    assert.equal(r.attempts[0].error_code, "UPSTREAM_TIMEOUT");
    assert.equal(r.slot?.outcome, "acquired");
    // The next one queued behind the hung request and got the slot when the timeout let it go.
    const waited = await h.record(b.id);
    assert.equal(waited.slot?.outcome, "waited");
    assert.equal(waited.slot?.queue_depth_at_entry, 0);
    assertSlotIdle(h);
  } finally {
    await shut(h);
  }
});

Deno.test("Ollama going down and coming back under steady traffic", async (t) => {
  const h = await harness();
  const served: string[] = [];
  let n = 0;
  const one = async (): Promise<EdrRecord> => {
    const a = await send(h, light(`steady ${n++}`));
    assert.equal(a.status, 200, `no client-visible failure: ${a.text}`);
    const r = await h.record(a.id);
    served.push(r.decision.provider!);
    return r;
  };
  try {
    await t.step("while up, traffic is served locally", async () => {
      for (let i = 0; i < 3; i++) assert.equal((await one()).decision.provider, "local");
    });

    await t.step("when Ollama stops, every request still succeeds from the cloud", async () => {
      await h.ollama.stop();
      for (let i = 0; i < 4; i++) {
        const r = await one();
        assert.equal(r.decision.provider, "anthropic");
      }
      // Connect failures opened the circuit: the last one did not even try the local host.
      assert.equal(h.router.health.snapshot().circuit, "open");
      const last = (await h.records()).at(-1)!;
      assert.deepEqual(last.attempts.map((a) => a.provider), ["anthropic"]);
    });

    await t.step("after a probe sees it down, requests skip local without trying it", async () => {
      await h.probe();
      const ready = await fetch(`${h.router.url}/readyz`);
      const body = await ready.json();
      assert.equal(ready.status, 503);
      assert.ok(body.local.reasons.includes("OLLAMA_UNREACHABLE"));
      for (let i = 0; i < 3; i++) {
        const r = await one();
        assert.equal(r.decision.provider, "anthropic");
        assert.equal(r.attempts.length, 1);
        assert.ok(r.decision_factors.includes("LOCAL_OLLAMA_UNREACHABLE"));
      }
    });

    await t.step(
      "when it comes back, one probe plus the recovery threshold return traffic to local",
      async () => {
        const before = h.ollama.requests.length;
        h.ollama.restart();
        await h.probe();
        const successThreshold = h.router.policy.health.circuit.success_threshold;
        // The probe that found the host back counts as one success toward closing the circuit.
        for (let i = 0; i < Math.max(1, successThreshold - 1); i++) {
          const r = await one();
          assert.equal(r.decision.provider, "local");
        }
        assert.equal(h.router.health.snapshot().circuit, "closed");
        for (let i = 0; i < 3; i++) assert.equal((await one()).decision.provider, "local");
        assert.ok(h.ollama.requests.length > before);
        const ready = await fetch(`${h.router.url}/readyz`);
        assert.equal(ready.status, 200);
        await ready.body?.cancel();
      },
    );

    assert.ok(served.length >= 14 && served.every((p) => p === "local" || p === "anthropic"));
  } finally {
    await shut(h);
  }
});

Deno.test("memory pressure above the threshold gates local", async (t) => {
  const GIB = 1024 ** 3;
  const memory: MemoryReading = { total: 64 * GIB, available: 32 * GIB, swapTotal: 0, swapFree: 0 };
  const h = await harness({ start: { health: { readMemory: () => ({ ...memory }) } } });
  try {
    await t.step("above memory_used_pct_max readyz says 503 MEMORY_PRESSURE", async () => {
      memory.available = 0.5 * GIB; // over 99% used
      await h.probe();
      const ready = await fetch(`${h.router.url}/readyz`);
      const body = await ready.json();
      assert.equal(ready.status, 503);
      assert.equal(body.ready, false);
      assert.deepEqual(body.local.reasons, ["MEMORY_PRESSURE"]);
      assert.ok(body.local.memory_used_pct > 95);
    });

    await t.step("requests go to the cloud without touching Ollama", async () => {
      const before = h.ollama.requests.length;
      for (const body of [light("under pressure"), heavy("heavy under pressure")]) {
        const a = await send(h, body);
        assert.equal(a.status, 200, a.text);
        const r = await h.record(a.id);
        assert.equal(r.decision.provider, "anthropic");
        assert.ok(r.decision_factors.includes("LOCAL_MEMORY_PRESSURE"));
        assert.ok(r.decision_factors.includes("FALLBACK_TO_CLOUD"));
        assert.equal(r.decision_inputs.health?.state, "unfit");
      }
      assert.equal(h.ollama.requests.length, before);
    });

    await t.step("SENSITIVE requests fail closed with 503", async () => {
      const a = await send(
        h,
        light("sensitive under pressure", { routing_contract: { classification: "SENSITIVE" } }),
      );
      assert.equal(a.status, 503);
      assert.equal(a.json.error.code, "LOCAL_UNAVAILABLE_FOR_SENSITIVE");
      assert.equal(
        h.anthropic.requests.filter((r) => JSON.stringify(r).includes("sensitive under")).length,
        0,
      );
      const r = await h.record(a.id);
      assert.equal(r.failure?.type, "policy_rejection");
    });

    await t.step("once memory is free again, local serves again", async () => {
      memory.available = 32 * GIB;
      await h.probe();
      const ready = await fetch(`${h.router.url}/readyz`);
      assert.equal(ready.status, 200);
      await ready.body?.cancel();
      const a = await send(h, light("pressure gone"));
      assert.equal((await h.record(a.id)).decision.provider, "local");
    });
  } finally {
    await shut(h);
  }
});

Deno.test("the circuit breaker opens on consecutive local 500s and recovers after the cooldown", async (t) => {
  let clock = 1_800_000_000_000;
  const h = await harness({ start: { health: { now: () => clock } } });
  const { failure_threshold, cooldown_ms, success_threshold } = h.router.policy.health.circuit;
  try {
    await t.step(`${failure_threshold} local 500s in a row fall back and open the circuit`, async () => {
      h.ollama.mode = "error500";
      for (let i = 0; i < failure_threshold; i++) {
        const a = await send(h, light(`failing ${i}`));
        assert.equal(a.status, 200, "each one falls back");
        const r = await h.record(a.id);
        assert.deepEqual(r.attempts.map((x) => [x.provider, x.outcome]), [["local", "fallback"], [
          "anthropic",
          "ok",
        ]]);
      }
      assert.equal(h.router.health.snapshot().circuit, "open");
    });

    await t.step("while open, requests skip local without trying it", async () => {
      h.ollama.mode = "normal";
      const before = h.ollama.requests.length;
      for (let i = 0; i < 3; i++) {
        const a = await send(h, light(`skipping ${i}`));
        assert.equal(a.status, 200);
        const r = await h.record(a.id);
        assert.equal(r.decision.provider, "anthropic");
        assert.ok(r.decision_factors.includes("LOCAL_CIRCUIT_OPEN"));
        assert.equal(r.decision_inputs.health?.circuit, "open");
        assert.deepEqual(r.attempts.map((x) => x.provider), ["anthropic"]);
      }
      assert.equal(h.ollama.requests.length, before, "Ollama saw nothing while the circuit was open");
      const ready = await fetch(`${h.router.url}/readyz`);
      const body = await ready.json();
      assert.equal(ready.status, 503);
      assert.ok(body.local.reasons.includes("CIRCUIT_OPEN"));
    });

    await t.step("after the cooldown, trial requests go local and close the circuit", async () => {
      clock += cooldown_ms;
      assert.equal(h.router.health.snapshot().circuit, "half_open");
      for (let i = 0; i < success_threshold; i++) {
        const a = await send(h, light(`trial ${i}`));
        const r = await h.record(a.id);
        assert.equal(r.decision.provider, "local");
        assert.equal(r.decision_inputs.health?.circuit, "half_open");
      }
      assert.equal(h.router.health.snapshot().circuit, "closed");
    });
  } finally {
    h.ollama.mode = "normal";
    await shut(h);
  }
});

/** Parses Prometheus text into `name{labels}` → value. */
function samples(body: string): Map<string, number> {
  const out = new Map<string, number>();
  for (const line of body.split("\n")) {
    if (line === "" || line.startsWith("#")) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{[^}]*\})?) (\S+)$/.exec(line);
    assert.ok(m, `not a Prometheus sample line: ${line}`);
    out.set(m[1], Number(m[2]));
  }
  return out;
}

async function scrape(h: Harness): Promise<{ text: string; values: Map<string, number> }> {
  const response = await fetch(`${h.router.url}/metrics`);
  assert.equal(response.status, 200);
  assert.match(response.headers.get("content-type") ?? "", /^text\/plain/);
  const text = await response.text();
  return { text, values: samples(text) };
}

Deno.test("/metrics shows requests, fallbacks, the slot, health and EDR writes after traffic", async () => {
  const h = await harness();
  try {
    assert.equal((await send(h, light("metrics local"))).status, 200);
    h.ollama.mode = "error500";
    assert.equal((await send(h, light("metrics fallback"))).status, 200);
    h.ollama.mode = "normal";

    const hold = holdOllama(h);
    const first = send(h, heavy("metrics heavy 1"));
    await h.ollama.waitForInFlight(HEAVY, 1);
    const second = send(h, heavy("metrics heavy 2"));
    await until("a heavy request queued", () => h.router.slot.snapshot().queue_depth === 1);
    const during = await scrape(h);
    assert.equal(during.values.get("hi_slot_busy"), 1, "the slot gauge shows the held slot");
    assert.equal(during.values.get("hi_slot_queue_depth"), 1, "the queue gauge shows the waiter");
    hold.release();
    for (const a of await Promise.all([first, second])) assert.equal(a.status, 200);

    const { text, values } = await scrape(h);
    for (
      const name of [
        "hi_requests_total",
        "hi_fallbacks_total",
        "hi_slot_busy",
        "hi_slot_queue_depth",
        "hi_slot_wait_seconds",
        "hi_local_health_state",
        "hi_local_circuit_state",
        "hi_edr_writes_total",
      ]
    ) assert.match(text, new RegExp(`^# TYPE ${name} `, "m"), name);
    const ep = 'endpoint="/v1/chat/completions"';
    assert.equal(values.get(`hi_requests_total{${ep},provider="local",outcome="primary",status="200"}`), 3);
    assert.equal(
      values.get(`hi_requests_total{${ep},provider="anthropic",outcome="fallback",status="200"}`),
      1,
    );
    assert.ok(
      [...values].some(([k, v]) => k.startsWith('hi_fallbacks_total{from="local",to="anthropic"') && v === 1),
      "the local → anthropic fallback is counted with its reason",
    );
    assert.equal(values.get("hi_slot_busy"), 0);
    assert.equal(values.get("hi_slot_queue_depth"), 0);
    assert.equal(values.get('hi_slot_wait_seconds_count{outcome="acquired"}'), 1);
    assert.equal(values.get('hi_local_health_state{state="fit"}'), 1);
    assert.equal(values.get('hi_local_circuit_state{circuit="closed"}'), 1);
    assert.equal(values.get('hi_edr_writes_total{outcome="written"}'), 4);
  } finally {
    h.ollama.mode = "normal";
    await shut(h);
  }
});

Deno.test("the slot never leaks across repeated hold, abort and timeout races", async (t) => {
  const ITERATIONS = 25;

  await t.step("hold, queue, abort a waiter, abort the holder, release: 25 times", async () => {
    const h = await harness({ noCloudKeys: true });
    try {
      for (let i = 0; i < ITERATIONS; i++) {
        const recordsBefore = (await h.records()).length;
        const heavyBefore = heavyChatsAtFake(h).length;
        const hold = holdOllama(h);
        const holder = abortable(h, heavy(`loop holder ${i}`, { stream: i % 2 === 0 }));
        await h.ollama.waitFor(() => heavyChatsAtFake(h).length === heavyBefore + 1);
        const next = send(h, heavy(`loop next ${i}`, { stream: i % 2 === 1 }));
        await until("the next request queued", () => h.router.slot.snapshot().queue_depth === 1);
        const waiter = abortable(h, heavy(`loop waiter ${i}`));
        await until("the waiter queued", () => h.router.slot.snapshot().queue_depth === 2);

        waiter.controller.abort();
        assert.ok((await waiter.done) instanceof Error);
        await until("the aborted waiter left the queue", () => h.router.slot.snapshot().queue_depth === 1);
        holder.controller.abort();
        assert.ok((await holder.done) instanceof Error);
        // The next request reaches Ollama while the holder's upstream is still held; release only once
        // the fake has seen the holder go away, so its count is exact.
        await h.ollama.waitFor(() => heavyChatsAtFake(h).length === heavyBefore + 2);
        await h.ollama.waitForAborted(i + 1);
        hold.release();
        const answer = await next;
        assert.equal(answer.status, 200, `iteration ${i}: ${answer.text}`);

        await until("three EDRs", async () => (await h.records()).length === recordsBefore + 3);
        await h.ollama.waitFor(() => (h.ollama.inFlight.get(HEAVY) ?? 0) === 0);
        assertSlotIdle(h, `after iteration ${i}`);
      }
      await h.ollama.waitForAborted(ITERATIONS);
      assert.equal(h.ollama.aborted, ITERATIONS, "every holder's upstream was aborted");
    } finally {
      await shut(h);
    }
  });

  await t.step("a hung holder times out and hands over: 25 times", async () => {
    // The first-byte deadline covers a JSON answer's whole body, so the answer after the hang needs room for
    // the fake's torn, slow writes on a loaded CI machine (150 ms was seen to run out under load).
    const h = await harness({ noCloudKeys: true, policy: { limits: { first_byte_timeout_ms: 300 } } });
    try {
      for (let i = 0; i < ITERATIONS; i++) {
        const heavyBefore = heavyChatsAtFake(h).length;
        h.ollama.mode = "hang";
        const hung = send(h, heavy(`loop hung ${i}`, { stream: i % 2 === 0 }));
        await h.ollama.waitFor(() => heavyChatsAtFake(h).length === heavyBefore + 1);
        h.ollama.mode = "normal";
        const next = send(h, heavy(`loop after hang ${i}`));
        const [a, b] = await Promise.all([hung, next]);
        assert.equal(a.status, 504, `iteration ${i}: ${a.text}`);
        assert.equal(b.status, 200, `iteration ${i}: ${b.text}`);
        await h.ollama.waitFor(() => (h.ollama.inFlight.get(HEAVY) ?? 0) === 0);
        assertSlotIdle(h, `after iteration ${i}`);
      }
      await h.ollama.waitForAborted(ITERATIONS);
    } finally {
      await shut(h);
    }
  });
});
