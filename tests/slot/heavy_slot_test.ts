import assert from "node:assert/strict";
import {
  HeavySlot,
  SlotError,
  type SlotLease,
  type SlotPolicy,
  slotPolicySchema,
} from "../../lib/slot/mod.ts";

/** Timers the test fires by hand, so timeouts are deterministic and nothing sleeps. */
class ManualTimers {
  #pending = new Map<number, () => void>();
  #next = 0;
  set = (fn: () => void, _ms: number): () => void => {
    const id = this.#next++;
    this.#pending.set(id, fn);
    return () => this.#pending.delete(id);
  };
  get count(): number {
    return this.#pending.size;
  }
  /** Fires the `index`-th pending timer (modulo the count); false when none is pending. */
  fire(index = 0): boolean {
    const ids = [...this.#pending.keys()];
    if (ids.length === 0) return false;
    const id = ids[index % ids.length];
    const fn = this.#pending.get(id)!;
    this.#pending.delete(id);
    fn();
    return true;
  }
}

function policy(overrides: Partial<SlotPolicy> = {}): SlotPolicy {
  return slotPolicySchema.parse(overrides);
}

/** Lets every already-settled promise deliver its handlers. */
async function flush(rounds = 5): Promise<void> {
  for (let i = 0; i < rounds; i++) await Promise.resolve();
}

async function rejection(promise: Promise<unknown>): Promise<SlotError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof SlotError, `expected a SlotError, got ${error}`);
    return error;
  }
  assert.fail("expected the promise to reject");
}

Deno.test("slot policy schema", async (t) => {
  await t.step("an empty policy gets every documented default", () => {
    assert.deepEqual(slotPolicySchema.parse({}), {
      when_busy: "wait",
      max_queue: 8,
      max_wait_ms: 30000,
      retry_after_s: 5,
    });
  });
  await t.step("an unknown when_busy value is rejected", () => {
    assert.throws(() => slotPolicySchema.parse({ when_busy: "panic" }));
  });
});

Deno.test("one heavy request at a time", async (t) => {
  await t.step("a free slot is taken at once and reported busy", () => {
    const slot = new HeavySlot(policy({ when_busy: "spill" }));
    assert.deepEqual(slot.snapshot(), { busy: false, queue_depth: 0, max_queue: 8, when_busy: "spill" });
    const lease = slot.tryAcquire();
    assert.ok(lease);
    assert.equal(lease.waitedMs, 0);
    assert.equal(lease.queueDepthAtEntry, 0);
    assert.equal(slot.snapshot().busy, true);
    assert.equal(slot.tryAcquire(), null, "a second holder is refused");
    lease.release();
    assert.equal(slot.snapshot().busy, false);
  });

  await t.step("12 concurrent requests never overlap and are served in arrival order", async () => {
    const timers = new ManualTimers();
    const slot = new HeavySlot(policy({ max_queue: 16 }), { setTimer: timers.set });
    let holders = 0;
    let maxHolders = 0;
    const order: number[] = [];
    const run = async (i: number) => {
      const lease = await slot.acquire({ signal: new AbortController().signal, maxWaitMs: 60_000 });
      holders++;
      maxHolders = Math.max(maxHolders, holders);
      order.push(i);
      await flush(i % 3); // hold it across a few turns of the event loop
      holders--;
      lease.release();
    };
    await Promise.all(Array.from({ length: 12 }, (_, i) => run(i)));
    assert.equal(maxHolders, 1);
    assert.deepEqual(order, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11]);
    assert.deepEqual(slot.snapshot(), { busy: false, queue_depth: 0, max_queue: 16, when_busy: "wait" });
    assert.equal(timers.count, 0, "every wait timer was cleared");
    assert.equal(slot.stats().acquired_after_wait, 11);
  });

  await t.step("a release hands the slot to the head of the queue, not to a newcomer", async () => {
    const slot = new HeavySlot(policy());
    const first = slot.tryAcquire()!;
    const waiting = slot.acquire({ maxWaitMs: 60_000 });
    first.release();
    assert.equal(slot.tryAcquire(), null, "the waiter already owns it");
    const second = await waiting;
    assert.equal(second.queueDepthAtEntry, 0);
    second.release();
    assert.equal(slot.snapshot().busy, false);
  });

  await t.step("waitedMs and queueDepthAtEntry describe the wait", async () => {
    let clock = 1000;
    const timers = new ManualTimers();
    const slot = new HeavySlot(policy(), { now: () => clock, setTimer: timers.set });
    const holder = slot.tryAcquire()!;
    const a = slot.acquire();
    clock += 5;
    const b = slot.acquire();
    clock += 20;
    holder.release();
    const leaseA = await a;
    assert.equal(leaseA.waitedMs, 25);
    assert.equal(leaseA.queueDepthAtEntry, 0);
    clock += 10;
    leaseA.release();
    const leaseB = await b;
    assert.equal(leaseB.waitedMs, 30);
    assert.equal(leaseB.queueDepthAtEntry, 1);
    leaseB.release();
  });
});

Deno.test("bounded waiting", async (t) => {
  await t.step("a full queue refuses at once with SLOT_QUEUE_FULL", async () => {
    const timers = new ManualTimers();
    const slot = new HeavySlot(policy({ max_queue: 2 }), { setTimer: timers.set });
    const holder = slot.tryAcquire()!;
    const a = slot.acquire();
    const b = slot.acquire();
    const error = await rejection(slot.acquire());
    assert.equal(error.code, "SLOT_QUEUE_FULL");
    assert.match(error.message, /^[a-z].*max_queue$/);
    assert.equal(slot.snapshot().queue_depth, 2);
    assert.equal(slot.stats().queue_full_refusals, 1);
    holder.release();
    (await a).release();
    (await b).release();
    assert.equal(slot.snapshot().busy, false);
  });

  await t.step("max_queue 0 means no waiting at all", async () => {
    const slot = new HeavySlot(policy({ max_queue: 0 }));
    const holder = slot.tryAcquire()!;
    assert.equal((await rejection(slot.acquire())).code, "SLOT_QUEUE_FULL");
    holder.release();
  });

  await t.step("a wait longer than maxWaitMs fails with SLOT_WAIT_TIMEOUT and leaves the queue", async () => {
    const timers = new ManualTimers();
    const slot = new HeavySlot(policy(), { setTimer: timers.set });
    const holder = slot.tryAcquire()!;
    const waiting = slot.acquire({ maxWaitMs: 10 });
    assert.equal(slot.snapshot().queue_depth, 1);
    timers.fire();
    assert.equal(slot.snapshot().queue_depth, 0, "the waiter is gone as soon as it times out");
    assert.equal((await rejection(waiting)).code, "SLOT_WAIT_TIMEOUT");
    holder.release();
    assert.equal(slot.snapshot().busy, false, "nobody inherits the slot from a timed-out waiter");
    assert.equal(slot.stats().wait_timeouts, 1);
  });

  await t.step("a real timer bounds the wait too", async () => {
    const slot = new HeavySlot(policy());
    const holder = slot.tryAcquire()!;
    assert.equal((await rejection(slot.acquire({ maxWaitMs: 1 }))).code, "SLOT_WAIT_TIMEOUT");
    holder.release();
  });

  await t.step("a cancelled request leaves the queue at once with SLOT_ABORTED", async () => {
    const timers = new ManualTimers();
    const slot = new HeavySlot(policy(), { setTimer: timers.set });
    const holder = slot.tryAcquire()!;
    const controller = new AbortController();
    const waiting = slot.acquire({ signal: controller.signal });
    assert.equal(slot.snapshot().queue_depth, 1);
    controller.abort();
    assert.equal(slot.snapshot().queue_depth, 0);
    assert.equal(timers.count, 0, "its timer is cleared");
    assert.equal((await rejection(waiting)).code, "SLOT_ABORTED");
    holder.release();
    assert.equal(slot.snapshot().busy, false);
  });

  await t.step("an already-cancelled request never takes the slot, even a free one", async () => {
    const slot = new HeavySlot(policy());
    assert.equal((await rejection(slot.acquire({ signal: AbortSignal.abort() }))).code, "SLOT_ABORTED");
    assert.equal(slot.snapshot().busy, false);
  });

  await t.step("after an abort, the release goes to the next waiter", async () => {
    const timers = new ManualTimers();
    const slot = new HeavySlot(policy(), { setTimer: timers.set });
    const holder = slot.tryAcquire()!;
    const controller = new AbortController();
    const b = slot.acquire({ signal: controller.signal });
    const c = slot.acquire();
    controller.abort();
    assert.equal((await rejection(b)).code, "SLOT_ABORTED");
    holder.release();
    const leaseC = await c;
    assert.equal(slot.snapshot().busy, true);
    leaseC.release();
    assert.equal(slot.snapshot().busy, false);
    assert.equal(timers.count, 0);
  });
});

Deno.test("releasing", async (t) => {
  await t.step("a double release never frees the next holder's slot", async () => {
    const slot = new HeavySlot(policy());
    const first = slot.tryAcquire()!;
    const waiting = slot.acquire({ maxWaitMs: 60_000 });
    first.release();
    const second = await waiting;
    first.release();
    first[Symbol.dispose]();
    assert.equal(slot.snapshot().busy, true);
    assert.equal(slot.tryAcquire(), null);
    second.release();
    second.release();
    assert.equal(slot.snapshot().busy, false);
    assert.equal(slot.stats().releases, 2);
  });

  await t.step("withSlot releases when the work throws", async () => {
    const slot = new HeavySlot(policy());
    await assert.rejects(
      slot.withSlot(() => {
        assert.equal(slot.snapshot().busy, true);
        throw new Error("boom");
      }),
      /boom/,
    );
    assert.equal(slot.snapshot().busy, false);
    assert.equal(await slot.withSlot(() => 42), 42);
  });

  await t.step("`using` releases at the end of the block", async () => {
    const slot = new HeavySlot(policy());
    {
      using _lease = await slot.acquire();
      assert.equal(slot.snapshot().busy, true);
    }
    assert.equal(slot.snapshot().busy, false);
  });
});

/** Small seeded PRNG (mulberry32) so every run replays the same interleavings. */
function seeded(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

Deno.test("200 seeded interleavings keep one holder, FIFO order and no leaks", async () => {
  for (let iteration = 0; iteration < 200; iteration++) {
    const random = seeded(iteration + 1);
    const pick = (n: number) => Math.floor(random() * n);
    const timers = new ManualTimers();
    const maxQueue = pick(5);
    const slot = new HeavySlot(policy({ max_queue: maxQueue }), { setTimer: timers.set });

    interface Actor {
      seq: number;
      controller: AbortController;
      settled: boolean;
      lease: SlotLease | null;
    }
    const actors: Actor[] = [];
    const held: Actor[] = [];
    const oldLeases: SlotLease[] = [];
    // Handlers run outside the test's call stack, so they collect problems and the loop asserts them.
    const problems: string[] = [];
    const fail = (message: string) => problems.push(`iteration ${iteration}: ${message}`);

    const spawn = () => {
      const actor: Actor = {
        seq: actors.length,
        controller: new AbortController(),
        settled: false,
        lease: null,
      };
      actors.push(actor);
      slot.acquire({ signal: actor.controller.signal, maxWaitMs: 1000 }).then(
        (lease) => {
          // FIFO: everyone who asked earlier has already been served or turned away.
          const skipped = actors.find((a) => a.seq < actor.seq && !a.settled);
          if (skipped) fail(`request ${actor.seq} was served before waiting request ${skipped.seq}`);
          actor.settled = true;
          actor.lease = lease;
          held.push(actor);
          if (held.length > 1) fail(`${held.length} holders at once`);
        },
        (error) => {
          if (!(error instanceof SlotError)) fail(`unexpected rejection ${error}`);
          actor.settled = true;
        },
      );
    };
    const releaseHolder = () => {
      const actor = held.shift();
      if (!actor) return;
      actor.lease!.release();
      oldLeases.push(actor.lease!);
    };

    for (let step = 0; step < 40; step++) {
      const op = pick(6);
      if (op <= 1) spawn();
      else if (op === 2) releaseHolder();
      else if (op === 3) {
        const live = actors.filter((a) => !a.settled);
        if (live.length) live[pick(live.length)].controller.abort();
      } else if (op === 4) timers.fire(pick(8));
      else if (oldLeases.length) oldLeases[pick(oldLeases.length)].release(); // stale double release
      if (random() < 0.7) await flush();

      await flush();
      const snap = slot.snapshot();
      const waiting = actors.filter((a) => !a.settled).length;
      if (snap.busy !== (held.length === 1)) fail(`busy=${snap.busy} but ${held.length} holders`);
      if (snap.queue_depth !== waiting) fail(`queue_depth=${snap.queue_depth} but ${waiting} waiting`);
      if (snap.queue_depth > maxQueue) fail(`queue_depth ${snap.queue_depth} above max_queue ${maxQueue}`);
      assert.deepEqual(problems, []);
    }

    // Wind down: cancel every waiter, release the holder; the slot must end free with no timers left.
    for (const actor of actors) actor.controller.abort();
    releaseHolder();
    await flush();
    assert.deepEqual(slot.snapshot(), {
      busy: false,
      queue_depth: 0,
      max_queue: maxQueue,
      when_busy: "wait",
    });
    assert.equal(timers.count, 0, `iteration ${iteration}: wait timers left behind`);
    assert.equal(held.length, 0);
    assert.ok(actors.every((a) => a.settled));
    assert.deepEqual(problems, []);
  }
});
