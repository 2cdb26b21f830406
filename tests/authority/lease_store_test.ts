import assert from "node:assert/strict";
import { join } from "node:path";
import { LeaseStore } from "../../lib/authority/mod.ts";

const HOUR = 3_600_000;
const NOW = 1_700_000_000_000;

async function tempDir(): Promise<string> {
  return await Deno.makeTempDir({ prefix: "lease_store_" });
}

Deno.test("lease store keeps every lease single-use", async (t) => {
  const dir = await tempDir();
  try {
    await t.step("a fresh lease is reserved and its second use is a replay", async () => {
      const store = await LeaseStore.open(dir);
      try {
        assert.equal(await store.reserve("a", NOW + HOUR, NOW), "reserved");
        assert.equal(await store.reserve("a", NOW + HOUR, NOW + 1), "replay");
        assert.equal(await store.reserve("b", NOW + HOUR, NOW), "reserved");
      } finally {
        await store.close();
      }
    });

    await t.step("a replay is still refused after the store is reopened", async () => {
      const store = await LeaseStore.open(dir, { now: () => NOW });
      try {
        assert.equal(await store.reserve("a", NOW + HOUR, NOW + 2), "replay");
        assert.equal(await store.reserve("b", NOW + HOUR, NOW + 2), "replay");
        assert.equal(await store.reserve("c", NOW + HOUR, NOW + 2), "reserved");
      } finally {
        await store.close();
      }
    });

    await t.step("the log holds only hashes, never the lease ids", async () => {
      const log = await Deno.readTextFile(join(dir, "leases", "leases.log"));
      assert.match(log, /^([0-9a-f]{64} \d+\n)+$/);
    });

    await t.step("a lease is forgotten only after it expired", async () => {
      const store = await LeaseStore.open(dir, { now: () => NOW });
      try {
        assert.equal(await store.reserve("short", NOW + 1000, NOW), "reserved");
        assert.equal(await store.reserve("short", NOW + 1000, NOW + 1000), "replay");
        assert.equal(await store.reserve("short", NOW + 5000, NOW + 1001), "reserved");
      } finally {
        await store.close();
      }
      const later = await LeaseStore.open(dir, { now: () => NOW + 2 * HOUR });
      try {
        assert.equal(later.size, 0, "expired entries are dropped when the store opens");
      } finally {
        await later.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lease store grants a lease to exactly one of many concurrent requests", async (t) => {
  const dir = await tempDir();
  const store = await LeaseStore.open(dir);
  try {
    await t.step("50 simultaneous reservations of one id: one reserved, 49 replays", async () => {
      const verdicts = await Promise.all(
        Array.from({ length: 50 }, () => store.reserve("contended", NOW + HOUR, NOW)),
      );
      assert.equal(verdicts.filter((v) => v === "reserved").length, 1);
      assert.equal(verdicts.filter((v) => v === "replay").length, 49);
    });
    await t.step("50 simultaneous distinct reservations are all durable after reopening", async () => {
      const ids = Array.from({ length: 50 }, (_, i) => `distinct-${i}`);
      const verdicts = await Promise.all(ids.map((id) => store.reserve(id, NOW + HOUR, NOW)));
      assert.ok(verdicts.every((v) => v === "reserved"));
      await store.close();
      const reopened = await LeaseStore.open(dir, { now: () => NOW });
      try {
        const again = await Promise.all(ids.map((id) => reopened.reserve(id, NOW + HOUR, NOW)));
        assert.ok(again.every((v) => v === "replay"));
      } finally {
        await reopened.close();
      }
    });
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lease store survives a torn last line and refuses misuse", async (t) => {
  const dir = await tempDir();
  try {
    await t.step("a half-written last line is ignored and later appends stay readable", async () => {
      const first = await LeaseStore.open(dir);
      assert.equal(await first.reserve("before-tear", NOW + HOUR, NOW), "reserved");
      await first.close();
      await Deno.writeTextFile(join(dir, "leases", "leases.log"), "0123abc", { append: true });
      const second = await LeaseStore.open(dir, { now: () => NOW });
      assert.equal(await second.reserve("before-tear", NOW + HOUR, NOW), "replay");
      assert.equal(await second.reserve("after-tear", NOW + HOUR, NOW), "reserved");
      await second.close();
      const third = await LeaseStore.open(dir, { now: () => NOW });
      try {
        assert.equal(await third.reserve("after-tear", NOW + HOUR, NOW), "replay");
      } finally {
        await third.close();
      }
    });

    await t.step("opening one directory twice in a process is refused", async () => {
      const store = await LeaseStore.open(dir);
      try {
        await assert.rejects(() => LeaseStore.open(dir), /already open/);
      } finally {
        await store.close();
      }
    });

    await t.step("a closed store refuses to reserve", async () => {
      const store = await LeaseStore.open(dir);
      await store.close();
      await assert.rejects(() => store.reserve("x", NOW + HOUR, NOW), /closed/);
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lease store keeps reservations acknowledged before a kill -9", async (t) => {
  const dir = await tempDir();
  const ids = Array.from({ length: 20 }, (_, i) => `killed-${i}`);
  try {
    await t.step("a child process reserves leases and is killed with SIGKILL", async () => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "--quiet",
          "--config",
          new URL("../../deno.json", import.meta.url).pathname,
          "--allow-read",
          "--allow-write",
          new URL("./lease_child.ts", import.meta.url).pathname,
          dir,
          ...ids,
        ],
        stdin: "piped",
        stdout: "piped",
        stderr: "inherit",
      }).spawn();
      const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
      let output = "";
      try {
        while (!output.includes("ready\n")) {
          const { value, done } = await reader.read();
          if (done) break;
          output += value;
        }
      } finally {
        child.kill("SIGKILL");
        await child.status;
        await reader.cancel();
        await child.stdin.close().catch(() => {});
      }
      const acknowledged = output.split("\n").filter((line) => line.startsWith("reserved ")).map((l) =>
        l.slice(9)
      );
      assert.deepEqual(acknowledged.sort(), [...ids].sort(), `child output: ${output}`);
    });

    await t.step("every acknowledged lease is a replay after reopening", async () => {
      const store = await LeaseStore.open(dir);
      try {
        const now = Date.now();
        const verdicts = await Promise.all(ids.map((id) => store.reserve(id, now + HOUR, now)));
        assert.deepEqual(verdicts, ids.map(() => "replay"));
      } finally {
        await store.close();
      }
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("lease store compacts its log as leases expire", async (t) => {
  const dir = await tempDir();
  const store = await LeaseStore.open(dir, { now: () => NOW });
  const batch = (round: number) => Array.from({ length: 5000 }, (_, i) => `round-${round}-${i}`);
  try {
    await t.step("expired leases are dropped from the log while the router runs", async () => {
      for (const round of [0, 1, 2]) {
        const at = NOW + round * 20;
        const verdicts = await Promise.all(batch(round).map((id) => store.reserve(id, at + 10, at)));
        assert.ok(verdicts.every((v) => v === "reserved"));
      }
      // close() waits for the compaction that runs after the last batch was acknowledged.
      await store.close();
      assert.equal(store.size, 5000);
      const log = await Deno.readTextFile(join(dir, "leases", "leases.log"));
      assert.equal(log.split("\n").length - 1, 5000, "only the last round's live leases remain");
    });
    await t.step("live leases are still refused after compaction and a reopen", async () => {
      const reopened = await LeaseStore.open(dir, { now: () => NOW + 40 });
      try {
        assert.equal(await reopened.reserve("round-2-7", NOW + 50, NOW + 40), "replay");
        assert.equal(await reopened.reserve("round-0-7", NOW + 50, NOW + 40), "reserved");
      } finally {
        await reopened.close();
      }
    });
  } finally {
    await store.close();
    await Deno.remove(dir, { recursive: true });
  }
});
