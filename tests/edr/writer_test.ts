import assert from "node:assert/strict";
import {
  canonicalJson,
  computeDecisionCoreHash,
  computeEdrHash,
  type EdrLogEvent,
  edrPath,
  EdrUnavailableError,
  EdrValidationError,
  EdrWriteError,
  EdrWriter,
  scanWalLines,
  sha256Hex,
  writePolicySnapshot,
} from "../../lib/edr/mod.ts";
import { assertChain, readDay } from "./chain_check.ts";
import { sampleDraft, sampleInput } from "./sample_draft.ts";

const DAY = "2026-11-27";

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.lstat(path);
    return true;
  } catch {
    return false;
  }
}

/** Sets every file under `dir` to have been modified `seconds` ago. */
async function ageTree(dir: string, seconds: number): Promise<void> {
  const then = new Date(Date.now() - seconds * 1000);
  for await (const entry of Deno.readDir(dir)) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) await ageTree(path, seconds);
    else await Deno.utime(path, then, then);
  }
}

function quietLog(into: EdrLogEvent[] = []): (event: EdrLogEvent) => void {
  return (event) => into.push(event);
}

Deno.test("EdrWriter", async (t) => {
  const root = await Deno.makeTempDir({ prefix: "edr_writer_" });

  await t.step("500 concurrent commits get sequences 1..500 with prev links that verify", async () => {
    const dir = `${root}/concurrent`;
    const writer = await EdrWriter.open(dir, { log: quietLog() });
    const drafts = Array.from({ length: 500 }, () => sampleDraft());
    const records = await Promise.all(drafts.map((d) => writer.commit(d)));
    assert.deepEqual(records.map((r) => r.sequence), Array.from({ length: 500 }, (_, i) => i + 1));
    assertChain(records);
    records.forEach((r, i) => {
      assert.equal(r.decision_core_hash, computeDecisionCoreHash(drafts[i]));
      assert.equal(r.edr_hash, computeEdrHash(r));
    });
    const stats = writer.stats();
    assert.equal(stats.committed, 500);
    assert.ok(stats.batches < 500, "commits were grouped into shared fdatasyncs");
    await writer.close();
    assertChain(await readDay(dir, DAY));
    for (const r of records) {
      assert.equal(await Deno.readTextFile(`${dir}/${edrPath(r)}`), canonicalJson(r) + "\n");
    }
  });

  await t.step("the write-ahead log holds every record as one JSON line", async () => {
    const lines = (await Deno.readTextFile(`${root}/concurrent/wal/${DAY}.log`)).trimEnd().split("\n");
    assert.equal(lines.length, 500);
    assert.deepEqual(
      lines.map((l) => JSON.parse(l).record.sequence),
      Array.from({ length: 500 }, (_, i) => i + 1),
    );
  });

  await t.step(
    "one request at a time on an idle event loop: blocking syncs, same durable chain",
    async () => {
      const dir = `${root}/one_at_a_time`;
      let idle = true;
      const writer = await EdrWriter.open(dir, { log: quietLog(), eventLoopIdle: () => idle });
      const records = [];
      for (let i = 0; i < 40; i++) records.push(await writer.commit(sampleDraft()));
      const solo = writer.stats().blocking_syncs;
      assert.ok(solo > 0, "a steady one-at-a-time load syncs on the calling thread");
      records.push(...await Promise.all([1, 2, 3].map(() => writer.commit(sampleDraft()))));
      idle = false;
      records.push(await writer.commit(sampleDraft()));
      idle = true;
      records.push(await writer.commit(sampleDraft()));
      assert.equal(
        writer.stats().blocking_syncs,
        solo,
        "concurrency switches blocking syncs off for a while",
      );
      assertChain(records);
      await writer.close();
      assertChain(await readDay(dir, DAY));
      assert.equal((await readDay(dir, DAY)).length, 45);
    },
  );

  await t.step("a tiny materialization backlog slows commits down but loses nothing", async () => {
    const dir = `${root}/backlog`;
    const writer = await EdrWriter.open(dir, { maxMaterializeBacklog: 1, log: quietLog() });
    const records = [];
    for (let wave = 0; wave < 5; wave++) {
      records.push(...await Promise.all(Array.from({ length: 10 }, () => writer.commit(sampleDraft()))));
    }
    await writer.close();
    assertChain(records);
    assert.equal((await readDay(dir, DAY)).length, 50);
  });

  await t.step(
    "flush() makes every committed record's file visible while the writer stays open",
    async () => {
      const dir = `${root}/flush`;
      const writer = await EdrWriter.open(dir, { log: quietLog() });
      await writer.flush();
      const records = await Promise.all(Array.from({ length: 20 }, () => writer.commit(sampleDraft())));
      await writer.flush();
      for (const r of records) {
        assert.ok(
          await exists(`${dir}/${edrPath(r)}`),
          `file of ${r.sequence} is missing`,
        );
      }
      const later = await writer.commit(sampleDraft());
      assert.equal(later.sequence, 21);
      await writer.close();
    },
  );

  await t.step(
    "a captured input is stored once, content-addressed, and the record points to it",
    async () => {
      const dir = `${root}/inputs`;
      const writer = await EdrWriter.open(dir, { log: quietLog() });
      const input = sampleInput("hello");
      const [a, b] = await Promise.all([
        writer.commit(sampleDraft(), { capturedInput: input }),
        writer.commit(sampleDraft(), { capturedInput: input }),
      ]);
      await writer.close();
      const hash = sha256Hex(canonicalJson(input));
      assert.equal(a.replay.required_inputs_pointer, `inputs/${hash}.json`);
      assert.equal(b.replay.required_inputs_pointer, `inputs/${hash}.json`);
      assert.equal(await Deno.readTextFile(`${dir}/inputs/${hash}.json`), canonicalJson(input));
      assert.equal(writer.stats().inputs_written, 1);
    },
  );

  await t.step(
    "files are cut from the WAL right even when an input mimics the line's own keys",
    async () => {
      // The worker finds the record inside a WAL line by its keys; a prompt may contain the same text.
      const dir = `${root}/mimic`;
      const writer = await EdrWriter.open(dir, { log: quietLog() });
      const input = {
        ...(sampleInput('{"record":{"decision_core_hash":"' + "f".repeat(64) + '"}}') as object),
        response_format: {
          json_schema: { name: "x", schema: { a: 1, record: { decision_core_hash: "0".repeat(64) } } },
          type: "json_schema",
        },
      };
      const records = await Promise.all([
        writer.commit(sampleDraft(), { capturedInput: input }),
        writer.commit(sampleDraft(), { capturedInput: input }),
        writer.commit(sampleDraft()),
      ]);
      await writer.flush();
      for (const r of records) {
        assert.equal(await Deno.readTextFile(`${dir}/${edrPath(r)}`), canonicalJson(r) + "\n");
      }
      const hash = sha256Hex(canonicalJson(input));
      assert.equal(await Deno.readTextFile(`${dir}/inputs/${hash}.json`), canonicalJson(input));
      assert.equal(writer.stats().materialize_errors, 0);
      await writer.close();
    },
  );

  await t.step("a reopened writer continues the day's chain", async () => {
    const dir = `${root}/reopen`;
    const first = await EdrWriter.open(dir, { log: quietLog() });
    const before = await Promise.all([1, 2, 3].map(() => first.commit(sampleDraft())));
    await first.close();
    const second = await EdrWriter.open(dir, { log: quietLog() });
    const next = await second.commit(sampleDraft());
    await second.close();
    assert.equal(next.sequence, 4);
    assert.equal(next.prev_edr_hash, before[2].edr_hash);
    assertChain(await readDay(dir, DAY));
  });

  await t.step("a new UTC day starts a new log and a new chain", async () => {
    const dir = `${root}/rollover`;
    const writer = await EdrWriter.open(dir, { log: quietLog() });
    const late = await writer.commit(sampleDraft({ timestamp: "2026-11-27T23:59:59.999Z" }));
    const early = await writer.commit(sampleDraft({ timestamp: "2026-11-28T00:00:00.000Z" }));
    const straggler = await writer.commit(sampleDraft({ timestamp: "2026-11-27T23:59:59.999Z" }));
    await writer.close();
    assert.deepEqual([late.sequence, early.sequence, straggler.sequence], [1, 1, 2]);
    assert.equal(early.prev_edr_hash, null);
    assert.equal(straggler.prev_edr_hash, late.edr_hash);
    assert.ok(await exists(`${dir}/wal/2026-11-27.log`));
    assert.ok(await exists(`${dir}/wal/2026-11-28.log`));
    assertChain(await readDay(dir, "2026-11-27"));
    assertChain(await readDay(dir, "2026-11-28"));
  });

  await t.step("open() restores record files and inputs that are missing", async () => {
    const dir = `${root}/restore`;
    const writer = await EdrWriter.open(dir, { log: quietLog() });
    const input = sampleInput("restore me");
    const record = await writer.commit(sampleDraft(), { capturedInput: input });
    await writer.close();
    await Deno.remove(`${dir}/${edrPath(record)}`);
    await Deno.remove(`${dir}/${record.replay.required_inputs_pointer}`);
    const again = await EdrWriter.open(dir, { log: quietLog() });
    await again.close();
    assert.equal(again.stats().recovery.files_restored, 1);
    assert.equal(again.stats().recovery.inputs_restored, 1);
    assert.equal(await Deno.readTextFile(`${dir}/${edrPath(record)}`), canonicalJson(record) + "\n");
    assert.equal(
      await Deno.readTextFile(`${dir}/${record.replay.required_inputs_pointer}`),
      canonicalJson(input),
    );
  });

  await t.step(
    "a record file of the wrong size (a crash before its data reached the disk) is replaced",
    async () => {
      const dir = `${root}/damaged`;
      const writer = await EdrWriter.open(dir, { log: quietLog() });
      const record = await writer.commit(sampleDraft());
      await writer.close();
      await Deno.writeTextFile(`${dir}/${edrPath(record)}`, "");
      const again = await EdrWriter.open(dir, { log: quietLog() });
      await again.close();
      assert.equal(again.stats().recovery.files_repaired, 1);
      assert.equal(await Deno.readTextFile(`${dir}/${edrPath(record)}`), canonicalJson(record) + "\n");
    },
  );

  await t.step("a finished day checked clean is not read again while its log stays as checked", async () => {
    const dir = `${root}/checked`;
    // A day long past whatever the clock says, so its log is finished.
    const day = "2026-01-15";
    const draft = () => sampleDraft({ timestamp: `${day}T08:00:00.000Z` });
    const first = await EdrWriter.open(dir, { log: quietLog() });
    const records = await Promise.all([1, 2, 3].map(() => first.commit(draft())));
    await first.close();
    const marker = `${dir}/wal/${day}.checked.json`;

    const young = await EdrWriter.open(dir, { log: quietLog() });
    await young.close();
    assert.equal(young.stats().recovery.days_trusted, 0);
    assert.ok(!await exists(marker), "files minutes old may not be on disk yet, so the day is not marked");

    await ageTree(`${dir}/edr`, 3600);
    await ageTree(`${dir}/inputs`, 3600);
    const checking = await EdrWriter.open(dir, { log: quietLog() });
    await checking.close();
    assert.equal(checking.stats().recovery.days_trusted, 0);
    assert.ok(await exists(marker));

    await Deno.remove(`${dir}/${edrPath(records[0])}`);
    const trusting = await EdrWriter.open(dir, { log: quietLog() });
    assert.equal(trusting.stats().recovery.days_trusted, 1);
    assert.equal(trusting.stats().recovery.records, 3);
    assert.equal(trusting.stats().recovery.files_restored, 0, "a trusted day's log is not read");
    const next = await trusting.commit(draft());
    await trusting.close();
    assert.equal(next.sequence, 4, "the chain continues from the marker's head");
    assert.equal(next.prev_edr_hash, records[2].edr_hash);

    const grown = await EdrWriter.open(dir, { log: quietLog() });
    await grown.close();
    assert.equal(grown.stats().recovery.days_trusted, 0, "a log that grew since the check is read whole");
    assert.equal(grown.stats().recovery.files_restored, 1);
    assertChain(await readDay(dir, day));
  });

  await t.step("a torn last WAL line is ignored and cut off, and the chain goes on", async () => {
    const dir = `${root}/torn`;
    const writer = await EdrWriter.open(dir, { log: quietLog() });
    const first = await writer.commit(sampleDraft());
    await writer.close();
    await Deno.writeTextFile(`${dir}/wal/${DAY}.log`, '{"record":{"edr_version":"1.0', { append: true });
    const events: EdrLogEvent[] = [];
    const again = await EdrWriter.open(dir, { log: quietLog(events) });
    assert.equal(again.stats().recovery.torn_tails, 1);
    const second = await again.commit(sampleDraft());
    await again.close();
    assert.equal(second.sequence, 2);
    assert.equal(second.prev_edr_hash, first.edr_hash);
    const third = await EdrWriter.open(dir, { log: quietLog() });
    await third.close();
    assert.equal(third.stats().recovery.corrupt_lines, 0);
    assert.equal(third.stats().recovery.torn_tails, 0);
    assert.equal(third.stats().recovery.records, 2);
    assert.ok(events.some((e) => e.msg.includes("torn tail")));
  });

  await t.step(
    "a log left with zeros ahead of its end (a crash) recovers every line and goes on",
    async () => {
      const dir = `${root}/zeros`;
      const path = `${dir}/wal/${DAY}.log`;
      const writer = await EdrWriter.open(dir, { log: quietLog() });
      const first = await Promise.all([1, 2, 3].map(() => writer.commit(sampleDraft())));
      // While the writer holds the log, zeros follow its last line; a kill -9 now would leave them.
      const live = await Deno.readFile(path);
      assert.ok(live.length > live.lastIndexOf(10) + 1, "zeros are written ahead of the log's end");
      const crashed = live.slice();
      await writer.close();
      const closed = await Deno.readFile(path);
      assert.equal(closed.at(-1), 10, "a closed log ends at its last line");
      assert.equal(closed.indexOf(0), -1);
      // Put the crash image back, with half a line written into the zeros.
      const torn = new TextEncoder().encode('{"record":{"edr_version":"1.0');
      crashed.set(torn, closed.length);
      await Deno.writeFile(path, crashed);
      const again = await EdrWriter.open(dir, { log: quietLog() });
      assert.equal(again.stats().recovery.records, 3);
      assert.equal(again.stats().recovery.torn_tails, 1);
      assert.equal(again.stats().recovery.corrupt_lines, 0);
      const next = await again.commit(sampleDraft());
      await again.close();
      assert.equal(next.sequence, 4);
      assert.equal(next.prev_edr_hash, first[2].edr_hash);
      const lines = (await Deno.readTextFile(path)).split("\n");
      assert.equal(lines.pop(), "", "the log ends with a newline and nothing after it");
      assert.deepEqual(lines.map((l) => JSON.parse(l).record.sequence), [1, 2, 3, 4]);

      // A line that reached the disk past a hole of zeros belongs to a batch that was never acknowledged.
      const holed = new Uint8Array(closed.length + 16 + closed.length);
      holed.set(closed);
      holed.set(closed.subarray(closed.indexOf(10) + 1), closed.length + 16);
      await Deno.writeFile(path, holed);
      const third = await EdrWriter.open(dir, { log: quietLog() });
      await third.close();
      assert.equal(third.stats().recovery.records, 3);
      assert.equal(third.stats().recovery.chain_breaks, 0);
      assert.equal(third.stats().recovery.corrupt_lines, 0);
    },
  );

  await t.step("an invalid draft is refused with EdrValidationError and uses no sequence", async () => {
    const dir = `${root}/invalid`;
    const writer = await EdrWriter.open(dir, { log: quietLog() });
    const bad = { ...sampleDraft(), prompt: "do not store me" } as never;
    await assert.rejects(writer.commit(bad), (error: unknown) => {
      assert.ok(error instanceof EdrValidationError);
      assert.ok(error instanceof EdrWriteError);
      assert.ok(error.errors.some((e) => e.includes("(prompt)")));
      return true;
    });
    await assert.rejects(writer.commit(sampleDraft({ timestamp: "not a time" })), EdrValidationError);
    const ok = await writer.commit(sampleDraft());
    assert.equal(ok.sequence, 1);
    await writer.close();
  });

  await t.step("without validation the writer still hashes and chains", async () => {
    const dir = `${root}/novalidate`;
    const writer = await EdrWriter.open(dir, { validate: false, log: quietLog() });
    const records = await Promise.all([1, 2].map(() => writer.commit(sampleDraft())));
    await writer.close();
    assertChain(records);
  });

  await t.step(
    "an unwritable WAL rejects every commit of the batch, then the writer repairs itself",
    async () => {
      const dir = `${root}/unwritable`;
      const events: EdrLogEvent[] = [];
      const writer = await EdrWriter.open(dir, { log: quietLog(events) });
      // Works even as root, where permission bits do not stop writes: the log's name is taken by a directory.
      await Deno.mkdir(`${dir}/wal/${DAY}.log`);
      const results = await Promise.allSettled(
        [1, 2, 3].map(() => writer.commit(sampleDraft(), { capturedInput: sampleInput("private prompt") })),
      );
      for (const result of results) {
        assert.equal(result.status, "rejected");
        assert.ok(result.status === "rejected" && result.reason instanceof EdrWriteError);
      }
      assert.equal(writer.stats().rejected, 3);
      const logged = JSON.stringify(events);
      assert.ok(events.some((e) => e.level === "error" && e.msg.includes("wal write failed")));
      assert.ok(
        !logged.includes("private prompt") && !logged.includes("req_"),
        "the log carries no record body",
      );
      assert.equal(writer.health().state, "degraded");
      await assert.rejects(
        writer.commit(sampleDraft()),
        EdrUnavailableError,
        "refused at once while degraded",
      );
      await Deno.remove(`${dir}/wal/${DAY}.log`);
      await writer.untilHealthy();
      const record = await writer.commit(sampleDraft());
      assert.equal(record.sequence, 1, "failed records left no gap in the chain");
      await writer.close();
      assertChain(await readDay(dir, DAY));
    },
  );

  if (Deno.uid() !== 0) {
    await t.step("a read-only WAL directory rejects commits with EdrWriteError", async () => {
      const dir = `${root}/readonly`;
      const writer = await EdrWriter.open(dir, { log: quietLog() });
      await Deno.chmod(`${dir}/wal`, 0o500);
      try {
        await assert.rejects(writer.commit(sampleDraft()), EdrWriteError);
      } finally {
        await Deno.chmod(`${dir}/wal`, 0o700);
      }
      await writer.close();
    });
  }

  await t.step("open() refuses an artifacts dir whose layout cannot be created", async () => {
    const dir = `${root}/blocked`;
    await Deno.mkdir(dir);
    await Deno.writeTextFile(`${dir}/wal`, "not a directory");
    await assert.rejects(EdrWriter.open(dir, { log: quietLog() }), EdrWriteError);
  });

  await t.step("commit after close is refused", async () => {
    const writer = await EdrWriter.open(`${root}/closed`, { log: quietLog() });
    await writer.close();
    await assert.rejects(writer.commit(sampleDraft()), /closed/);
  });

  await t.step("the policy snapshot is stored canonically under its hash", async () => {
    const dir = `${root}/policy`;
    const hash = await writePolicySnapshot(dir, { version: "builtin", rules: [{ b: 2, a: 1 }] });
    assert.equal(hash, sha256Hex('{"rules":[{"a":1,"b":2}],"version":"builtin"}'));
    assert.equal(
      await Deno.readTextFile(`${dir}/policies/${hash}.json`),
      '{"rules":[{"a":1,"b":2}],"version":"builtin"}',
    );
    assert.equal(await writePolicySnapshot(dir, { rules: [{ a: 1, b: 2 }], version: "builtin" }), hash);
    assert.deepEqual([...Deno.readDirSync(`${dir}/policies`)].map((e) => e.name), [`${hash}.json`]);
  });

  await Deno.remove(root, { recursive: true });
});

Deno.test("scanWalLines finds every line, its offset and the log's end across any block size", async () => {
  const path = await Deno.makeTempFile({ prefix: "wal_scan_" });
  try {
    const lines = ["{}", '{"record":{"a":1}}', "x".repeat(40), "", '{"b":"ünïcode"}'];
    const encoder = new TextEncoder();
    const body = encoder.encode(lines.map((l) => l + "\n").join("") + '{"torn":');
    const zeros = new Uint8Array(23);
    await Deno.writeFile(path, new Uint8Array([...body, ...zeros]));
    const whole = encoder.encode(lines.map((l) => l + "\n").join(""));
    for (const blockBytes of [1, 3, 7, 64, 4096]) {
      const seen: Array<[string, number]> = [];
      const result = await scanWalLines(path, (line, start) => {
        seen.push([new TextDecoder().decode(line), start]);
      }, blockBytes);
      let offset = 0;
      const expected = lines.map((l): [string, number] => {
        const at = offset;
        offset += encoder.encode(l).length + 1;
        return [l, at];
      });
      assert.deepEqual(seen, expected, `block ${blockBytes}`);
      assert.equal(result.linesEnd, whole.length);
      assert.equal(result.logEnd, body.length, "the torn line ends at the first zero");
      assert.equal(result.fileSize, body.length + zeros.length);
    }
  } finally {
    await Deno.remove(path);
  }
});
