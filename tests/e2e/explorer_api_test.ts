/**
 * The EDR explorer's JSON API (docs/explorer.md) without a browser: through `deno task serve` after real
 * requests, and through `deno task explore` over the folder the router left, including records that are
 * only in the write-ahead log and days whose log is gone.
 */
import assert from "node:assert/strict";
import { hashClientKey } from "../../lib/authority/mod.ts";
import { sendLocalAndCloud } from "./explorer_requests.ts";
import { policyWith, REPO_ROOT, runTask, type ServedRouter, startServeHealthy } from "./serve_harness.ts";

/** A call's status, headers and parsed JSON body. */
interface Got {
  status: number;
  headers: Headers;
  // deno-lint-ignore no-explicit-any
  body: any;
}

async function call(url: string, init: RequestInit = {}): Promise<Got> {
  const response = await fetch(url, init);
  const text = await response.text();
  let body: unknown = text;
  try {
    body = JSON.parse(text);
  } catch {
    // a static file
  }
  return { status: response.status, headers: response.headers, body };
}

const replayInit = { method: "POST", headers: { "content-type": "application/json" }, body: "{}" };

/** Three requests: one served locally, one where local fails and the cloud answers, one refused. */
async function sendThree(s: ServedRouter): Promise<{ local: string; cloud: string; refused: string }> {
  const answered = await sendLocalAndCloud(s);
  const refused = await fetch(`${s.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: "no-such-model", messages: [{ role: "user", content: "hi" }] }),
  });
  await refused.body?.cancel();
  assert.notEqual(refused.status, 200);
  return { ...answered, refused: refused.headers.get("x-request-id")! };
}

Deno.test("explorer API through deno task serve: list, filter, page, record, day, verify, replay", async (t) => {
  const s = await startServeHealthy();
  try {
    const ids = await sendThree(s);
    const api = `${s.url}/api`;

    await t.step("the list has every request, newest first, right after the answers", async () => {
      // No wait for the record files: the list reads the write-ahead log too.
      const { status, body } = await call(`${api}/records`);
      assert.equal(status, 200);
      assert.deepEqual(body.records.map((r: { request_id: string }) => r.request_id), [
        ids.refused,
        ids.cloud,
        ids.local,
      ]);
      assert.equal(body.total, 3);
      assert.equal(body.next_cursor, null);
      const cloud = body.records[1];
      assert.equal(cloud.provider, "anthropic");
      assert.equal(cloud.path, "fallback");
      assert.equal(cloud.fallbacks, 1);
      // The reason a fallback row shows is the error the local attempt fell back on.
      const cloudRecord = await s.record(ids.cloud);
      assert.equal(cloud.reason, cloudRecord.attempts[0].error_code);
      assert.ok(cloud.reasons.includes(cloud.reason));
      assert.equal(body.records[0].status, "policy_rejection");
      assert.equal(body.records[0].provider, "none");
    });

    await t.step("filters narrow the list; a request id prefix finds one", async () => {
      const local = await call(`${api}/records?provider=local`);
      assert.deepEqual(local.body.records.map((r: { request_id: string }) => r.request_id), [ids.local]);
      const failed = await call(`${api}/records?status=policy_rejection`);
      assert.deepEqual(failed.body.records.map((r: { request_id: string }) => r.request_id), [ids.refused]);
      const internal = await call(`${api}/records?classification=INTERNAL&reason=LOCAL_FIT`);
      assert.equal(internal.body.total, 2);
      const found = await call(`${api}/records?request_id=${ids.cloud.slice(0, 12)}`);
      assert.deepEqual(found.body.records.map((r: { request_id: string }) => r.request_id), [ids.cloud]);
      const none = await call(`${api}/records?day=1999-01-01`);
      assert.equal(none.body.total, 0);
      const third = await call(`${api}/records?day=${found.body.records[0].day}&sequence=3`);
      assert.deepEqual(third.body.records.map((r: { request_id: string }) => r.request_id), [ids.refused]);
      assert.equal((await call(`${api}/records?sequence=0`)).status, 400);
      const bad = await call(`${api}/records?provider=<script>`);
      assert.equal(bad.status, 400);
      assert.equal(bad.body.error.code, "INVALID_FILTER");
    });

    await t.step("pages of one walk every record once, in order", async () => {
      const seen: string[] = [];
      let cursor: string | null = null;
      do {
        const page: Got = await call(`${api}/records?limit=1${cursor ? `&cursor=${cursor}` : ""}`);
        assert.equal(page.status, 200);
        assert.equal(page.body.records.length, 1);
        seen.push(page.body.records[0].request_id);
        cursor = page.body.next_cursor;
      } while (cursor !== null);
      assert.deepEqual(seen, [ids.refused, ids.cloud, ids.local]);
      assert.equal((await call(`${api}/records?limit=0`)).status, 400);
      assert.equal((await call(`${api}/records?cursor=nope`)).status, 400);
    });

    await t.step("one record is the EDR as stored on disk", async () => {
      const stored = await s.record(ids.cloud);
      const { status, body } = await call(`${api}/records/${ids.cloud}`);
      assert.equal(status, 200);
      assert.deepEqual(body.record, stored);
      // Its neighbours in the day's chain, the previous one holding the hash this record names.
      const local = await s.record(ids.local);
      assert.deepEqual(body.chain.previous, {
        request_id: ids.local,
        sequence: stored.sequence - 1,
        edr_hash: local.edr_hash,
      });
      assert.equal(body.chain.previous.edr_hash, stored.prev_edr_hash);
      assert.equal(body.chain.next.request_id, ids.refused);
      const missing = await call(`${api}/records/req_${"0".repeat(32)}`);
      assert.equal(missing.status, 404);
      assert.equal(missing.body.error.code, "RECORD_NOT_FOUND");
      assert.equal((await call(`${api}/records/not-an-id`)).status, 400);
    });

    await t.step("days, a day's statistics and its verify", async () => {
      const day = (await s.record(ids.local)).timestamp.slice(0, 10);
      const days = await call(`${api}/days`);
      assert.deepEqual(days.body.days, [{ day, records: 3 }]);
      const stats = await call(`${api}/days/${day}`);
      assert.equal(stats.body.records, 3);
      assert.deepEqual(stats.body.by_provider, { local: 1, anthropic: 1, none: 1 });
      const inHistogram = stats.body.latency_histogram.reduce(
        (n: number, b: { count: number }) => n + b.count,
        0,
      );
      assert.equal(inHistogram, 3);
      assert.equal(stats.body.provider_share.local, 1 / 3);
      const verify = await call(`${api}/days/${day}/verify`);
      assert.equal(verify.status, 200);
      assert.equal(verify.body.intact, true, JSON.stringify(verify.body.findings));
      assert.deepEqual(verify.body.findings, []);
    });

    await t.step(
      "replay: MATCH for the local record, REFUSED for the cloud one, nothing written",
      async () => {
        const local = await call(`${api}/records/${ids.local}/replay`, replayInit);
        assert.equal(local.status, 200);
        assert.equal(local.body.report.status, "MATCH", JSON.stringify(local.body.report));
        assert.equal(local.body.report.request_id, ids.local);
        const cloud = await call(`${api}/records/${ids.cloud}/replay`, replayInit);
        assert.equal(cloud.body.report.status, "REFUSED");
        assert.deepEqual(cloud.body.report.reason_codes, ["NETWORK_NOT_ALLOWED"]);
        // The explorer only reads: no report lands in the artifacts folder.
        await assert.rejects(Deno.stat(`${s.artifactsDir}/replay`), Deno.errors.NotFound);
        assert.equal((await call(`${api}/records/${ids.local}/replay`)).status, 405);
        const form = await call(`${api}/records/${ids.local}/replay`, { method: "POST", body: "x=1" });
        assert.equal(form.status, 415);
      },
    );

    await t.step("the page's files come with a strict CSP; nothing outside ui/ is served", async () => {
      const page = await call(`${s.url}/ui`);
      assert.equal(page.status, 200);
      assert.match(page.headers.get("content-type")!, /text\/html/);
      assert.match(page.headers.get("content-security-policy")!, /default-src 'none'; script-src 'self'/);
      assert.match(String(page.body), /app\.js/);
      const script = await call(`${s.url}/ui/app.js`);
      assert.match(script.headers.get("content-type")!, /javascript/);
      for (const path of ["/ui/../deno.json", "/ui/%2e%2e%2fdeno.json", "/ui/nope.js", "/ui/sub/app.js"]) {
        const got = await fetch(`${s.url}${path}`);
        await got.body?.cancel();
        assert.equal(got.status, 404, path);
      }
    });
  } finally {
    await s.close();
  }
});

Deno.test("explorer API with client keys: /api needs the key, /ui loads without one", async () => {
  const key = `sk-hi-${crypto.randomUUID()}`;
  const s = await startServeHealthy({
    noCloudKeys: true,
    policy: policyWith({ client_keys: [{ id: "team", sha256: hashClientKey(key) }] }),
  });
  try {
    const bare = await call(`${s.url}/api/records`);
    assert.equal(bare.status, 401);
    assert.equal(bare.body.error.code, "CLIENT_KEY_MISSING");
    const wrong = await call(`${s.url}/api/days`, { headers: { authorization: "Bearer sk-wrong" } });
    assert.equal(wrong.status, 401);
    const replay = await call(`${s.url}/api/records/req_${"0".repeat(32)}/replay`, replayInit);
    assert.equal(replay.status, 401);
    const keyed = await call(`${s.url}/api/records`, { headers: { authorization: `Bearer ${key}` } });
    assert.equal(keyed.status, 200);
    assert.deepEqual(keyed.body.records, []);
    assert.equal((await call(`${s.url}/ui`)).status, 200);
    assert.equal((await call(`${s.url}/ui/app.js`)).status, 200);
  } finally {
    await s.close();
  }
});

/** `deno task explore DIR` running, with the address it printed. */
async function startExplore(dir: string): Promise<{ url: string; stop(): Promise<number> }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "explore", dir],
    cwd: REPO_ROOT,
    stdin: "null",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const deadline = setTimeout(() => child.kill("SIGKILL"), 15_000);
  try {
    while (!/\/ui /.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`explore ended before printing its address: ${out}`);
      out += value;
    }
  } finally {
    clearTimeout(deadline);
  }
  const url = /(http:\/\/127\.0\.0\.1:\d+)\/ui/.exec(out)![1];
  return {
    url,
    async stop() {
      child.kill("SIGINT");
      const drained = (async () => {
        while (!(await reader.read()).done) { /* drain */ }
      })();
      const { code } = await child.status;
      await drained;
      return code;
    },
  };
}

Deno.test("deno task explore serves a folder offline: from the log, from files alone, and --help", async (t) => {
  const s = await startServeHealthy();
  let ids: { local: string; cloud: string; refused: string };
  try {
    ids = await sendThree(s);
    await s.records();
  } finally {
    await s.stop();
  }
  const dir = s.artifactsDir;
  try {
    await t.step("every record is listed and replays over the folder the router left", async () => {
      const explore = await startExplore(dir);
      try {
        const list = await call(`${explore.url}/api/records`);
        assert.deepEqual(list.body.records.map((r: { request_id: string }) => r.request_id), [
          ids.refused,
          ids.cloud,
          ids.local,
        ]);
        const page = await call(`${explore.url}/ui`);
        assert.equal(page.status, 200);
        const cloud = await call(`${explore.url}/api/records/${ids.cloud}/replay`, replayInit);
        assert.equal(cloud.body.report.status, "REFUSED");
      } finally {
        assert.equal(await explore.stop(), 0);
      }
    });

    await t.step("records only in the write-ahead log are listed and shown", async () => {
      const edr = `${dir}/edr`;
      await Deno.rename(edr, `${dir}/edr-moved`);
      const explore = await startExplore(dir);
      try {
        const list = await call(`${explore.url}/api/records`);
        assert.equal(list.body.total, 3);
        const one = await call(`${explore.url}/api/records/${ids.local}`);
        assert.equal(one.body.record.request_id, ids.local);
      } finally {
        await explore.stop();
        await Deno.rename(`${dir}/edr-moved`, edr);
      }
    });

    await t.step("a day whose log is archived is read from its record files", async () => {
      await Deno.rename(`${dir}/wal`, `${dir}/wal-archived`);
      const explore = await startExplore(dir);
      try {
        const list = await call(`${explore.url}/api/records`);
        assert.deepEqual(list.body.records.map((r: { request_id: string }) => r.request_id), [
          ids.refused,
          ids.cloud,
          ids.local,
        ]);
        const verify = await call(`${explore.url}/api/days/${list.body.records[0].day}/verify`);
        assert.equal(verify.body.intact, false);
        assert.ok(verify.body.findings.some((f: { kind: string }) => f.kind === "wal_missing"));
      } finally {
        await explore.stop();
        await Deno.rename(`${dir}/wal-archived`, `${dir}/wal`);
      }
    });

    await t.step("--help prints usage; a folder without records exits 1", async () => {
      const help = await runTask(["explore", "--help"]);
      assert.equal(help.code, 0);
      assert.match(help.stdout, /usage: deno task explore/);
      const empty = await Deno.makeTempDir();
      try {
        const run = await runTask(["explore", empty]);
        assert.equal(run.code, 1);
        assert.match(run.output, /holds no edr\/ or wal\/ folder/);
      } finally {
        await Deno.remove(empty, { recursive: true });
      }
      assert.equal((await runTask(["explore", "--bogus"])).code, 64);
    });
  } finally {
    await s.close();
  }
});

Deno.test("deno task demo --keep ends by printing the explorer's address and serves it until Ctrl-C", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: ["task", "-q", "demo", "--keep"],
    cwd: REPO_ROOT,
    env: { NO_COLOR: "1" },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const stderr = new Response(child.stderr).text();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  const deadline = setTimeout(() => child.kill("SIGKILL"), 60_000);
  try {
    while (!/EDR explorer: http:\/\/[\d.:]+\/ui\n/.test(out)) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`demo ended before printing the explorer: ${out}\n${await stderr}`);
      out += value;
    }
    assert.match(out, /demo complete/);
    const url = /EDR explorer: (http:\/\/[\d.:]+)\/ui/.exec(out)![1];
    const list = await call(`${url}/api/records`);
    assert.equal(list.status, 200);
    assert.equal(list.body.total, 4);
    assert.equal((await call(`${url}/ui`)).status, 200);
    child.kill("SIGINT");
    while (!(await reader.read()).done) { /* drain */ }
    assert.equal((await child.status).code, 0);
  } finally {
    clearTimeout(deadline);
    await stderr;
  }
});
