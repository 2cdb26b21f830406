/**
 * A bounded boundary, through `deno task serve`: request bodies are counted in bytes as they arrive and
 * refused at `limits.max_body_bytes` without being held whole, or at `limits.body_timeout_ms` when they stop
 * arriving; a flood of idle or half-sent connections is shed by the connection cap and the header timeout,
 * and running out of file descriptors is survived.
 */
import assert from "node:assert/strict";
import { policyWith, type ServedRouter, startServeHealthy } from "./serve_harness.ts";

const encoder = new TextEncoder();
const MiB = 1024 * 1024;

/** An HTTP answer read off a raw connection. */
interface RawAnswer {
  status: number;
  headers: Headers;
  body: string;
}

/** Reads one HTTP/1.1 response (content-length framed, as the router's errors are) from `conn`. */
async function readResponse(conn: Deno.Conn): Promise<RawAnswer> {
  const decoder = new TextDecoder();
  let text = "";
  const buffer = new Uint8Array(64 * 1024);
  while (true) {
    const n = await conn.read(buffer);
    if (n === null) throw new Error(`the connection closed mid-answer after ${JSON.stringify(text)}`);
    text += decoder.decode(buffer.subarray(0, n), { stream: true });
    const headEnd = text.indexOf("\r\n\r\n");
    if (headEnd === -1) continue;
    const [statusLine, ...lines] = text.slice(0, headEnd).split("\r\n");
    const headers = new Headers(
      lines.map((l) => [l.slice(0, l.indexOf(":")), l.slice(l.indexOf(":") + 1).trim()]),
    );
    const length = Number(headers.get("content-length") ?? "0");
    const body = text.slice(headEnd + 4);
    if (encoder.encode(body).length < length) continue;
    return { status: Number(statusLine.split(" ")[1]), headers, body };
  }
}

/** Writes all of `bytes` (a socket write may take only part of them). */
async function writeAll(conn: Deno.Conn, bytes: Uint8Array): Promise<void> {
  for (let offset = 0; offset < bytes.length;) offset += await conn.write(bytes.subarray(offset));
}

/**
 * POSTs a chunked body (no content-length) made of `chunks` on a raw connection, and stops sending as
 * soon as the answer arrives, as a client whose upload is refused mid-way does.
 */
async function postChunked(url: string, chunks: Iterable<Uint8Array>): Promise<RawAnswer> {
  const { hostname, port, pathname } = new URL(url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  const answer = readResponse(conn);
  let answered = false;
  answer.finally(() => answered = true).catch(() => {});
  try {
    await writeAll(
      conn,
      encoder.encode(
        `POST ${pathname} HTTP/1.1\r\nhost: ${hostname}\r\ncontent-type: application/json\r\n` +
          "transfer-encoding: chunked\r\n\r\n",
      ),
    );
    const sending = (async () => {
      for (const chunk of chunks) {
        if (answered) return;
        await writeAll(conn, encoder.encode(`${chunk.length.toString(16)}\r\n`));
        await writeAll(conn, chunk);
        await writeAll(conn, encoder.encode("\r\n"));
      }
      await writeAll(conn, encoder.encode("0\r\n\r\n"));
    })();
    // The server may stop reading (and close) once it refused the body: a failed write is expected then.
    sending.catch(() => {});
    return await answer;
  } finally {
    conn.close();
  }
}

/** `count` chunks of `size` bytes of filler inside one JSON string (the body is never valid: it never ends). */
function* filler(count: number, size: number, byte = "a"): Generator<Uint8Array> {
  yield encoder.encode('{"messages":[{"role":"user","content":"');
  const chunk = encoder.encode(byte.repeat(size / encoder.encode(byte).length));
  for (let i = 0; i < count; i++) yield chunk;
}

/** The peak resident memory of a process (VmHWM), in bytes. */
function peakRss(pid: number): number {
  const status = Deno.readTextFileSync(`/proc/${pid}/status`);
  return Number(/VmHWM:\s+(\d+) kB/.exec(status)![1]) * 1024;
}

async function assertRefusedTooLarge(router: ServedRouter, answer: RawAnswer, limit: number): Promise<void> {
  assert.equal(answer.status, 413, answer.body);
  const error = JSON.parse(answer.body).error;
  assert.equal(error.code, "REQUEST_TOO_LARGE");
  assert.equal(error.type, "invalid_request_error");
  assert.match(error.message, new RegExp(`exceeds ${limit} bytes`));
  const record = await router.record(answer.headers.get("x-request-id")!);
  assert.equal(record.failure?.type, "validation_error");
  assert.equal(record.failure?.code, "REQUEST_TOO_LARGE");
}

Deno.test("request bodies are counted in bytes and refused at the limit without being held", async (t) => {
  const router = await startServeHealthy();
  const chat = `${router.url}/v1/chat/completions`;
  const limit = 4 * MiB; // the built-in limits.max_body_bytes
  try {
    await t.step("a 300 MB chunked body gets 413 while the server stays under 200 MB of memory", async () => {
      const answer = await postChunked(chat, filler(300, MiB));
      await assertRefusedTooLarge(router, answer, limit);
      const peak = peakRss(router.serverPid);
      assert.ok(peak < 200 * MiB, `the server's peak RSS was ${Math.round(peak / MiB)} MB`);
    });

    await t.step("a chunked body of multi-byte characters is measured in bytes, not characters", async () => {
      // 5.4 MB of "é" is 2.7 million UTF-16 units: under the limit counted in characters, over it in bytes.
      const answer = await postChunked(chat, filler(90, 60_000, "é"));
      await assertRefusedTooLarge(router, answer, limit);
    });

    await t.step("a declared content-length over the limit is refused before the body is read", async () => {
      const { hostname, port } = new URL(router.url);
      const conn = await Deno.connect({ hostname, port: Number(port) });
      try {
        await writeAll(
          conn,
          encoder.encode(
            `POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n` +
              `content-length: ${300 * MiB}\r\n\r\n{"messages":`,
          ),
        );
        await assertRefusedTooLarge(router, await readResponse(conn), limit);
      } finally {
        conn.close();
      }
    });

    await t.step("a body within the limit is still served", async () => {
      const answer = await postChunked(chat, [
        encoder.encode('{"messages":[{"role":"user","content":"hi"}]}'),
      ]);
      assert.equal(answer.status, 200, answer.body);
    });
  } finally {
    await router.close();
  }
});

/** Opens `count` connections that send nothing (or `first`, an unfinished request head). */
async function openIdle(url: string, count: number, first?: string): Promise<Deno.Conn[]> {
  const { hostname, port } = new URL(url);
  const conns: Deno.Conn[] = [];
  for (let i = 0; i < count; i++) {
    const conn = await Deno.connect({ hostname, port: Number(port) });
    if (first !== undefined) await writeAll(conn, encoder.encode(first));
    conns.push(conn);
  }
  return conns;
}

/** Resolves with how many of `conns` the server closed (a read ends) before `ms` ran out; closes them all. */
async function closedByServer(conns: Deno.Conn[], ms: number): Promise<number> {
  let closed = 0;
  const buffer = new Uint8Array(16);
  const timer = setTimeout(() => conns.forEach((c) => c.close()), ms);
  await Promise.all(conns.map(async (conn) => {
    try {
      if (await conn.read(buffer) === null) closed++;
    } catch {
      // Closed here when time ran out.
    }
  }));
  clearTimeout(timer);
  for (const conn of conns) {
    try {
      conn.close();
    } catch { /* already closed */ }
  }
  return closed;
}

async function chatAnswers(router: ServedRouter): Promise<void> {
  const response = await fetch(`${router.url}/v1/chat/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", connection: "close" },
    body: JSON.stringify({ messages: [{ role: "user", content: "still there?" }] }),
    signal: AbortSignal.timeout(10_000),
  });
  const body = await response.json();
  assert.equal(response.status, 200, JSON.stringify(body));
  assert.equal(body.choices[0].finish_reason, "stop");
}

Deno.test("a flood of idle connections under a 256-descriptor limit is shed and the router keeps answering", async (t) => {
  const headerTimeoutMs = 1_000;
  const router = await startServeHealthy({
    nofile: 256,
    policy: policyWith({ limits: { max_connections: 64, header_timeout_ms: headerTimeoutMs } }),
  });
  try {
    await t.step("300 silent connections: a request still gets 200", async () => {
      const flood = await openIdle(router.url, 300);
      await chatAnswers(router);
      // Those over the cap were closed to make room; the rest by the header timeout.
      assert.equal(await closedByServer(flood, headerTimeoutMs + 5_000), 300);
    });

    await t.step(
      "a connection that never finishes its request head is closed after header_timeout_ms",
      async () => {
        const started = performance.now();
        const [slow] = await openIdle(router.url, 1, "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\n");
        assert.equal(await closedByServer([slow], headerTimeoutMs + 5_000), 1);
        assert.ok(performance.now() - started >= headerTimeoutMs * 0.9, "closed before its header timeout");
      },
    );

    await t.step("the process is alive and still answers", async () => {
      await chatAnswers(router);
      assert.doesNotMatch(router.output(), /Uncaught|Too many open files \(os error 24\)\n\s+at/);
    });
  } finally {
    await router.close();
  }
});

Deno.test("running out of file descriptors is logged and survived, never fatal", async () => {
  // A cap above the descriptor limit: accepting itself fails with "Too many open files".
  const router = await startServeHealthy({
    nofile: 256,
    policy: policyWith({ limits: { max_connections: 100_000, header_timeout_ms: 2_000 } }),
  });
  try {
    // A router in service has its write-ahead log open. Without this the first record's log would be
    // opened during the flood, which may fail closed (503, the writer degraded until it can open it): a
    // correct answer, but not the one this test is about.
    await chatAnswers(router);
    const flood = await openIdle(router.url, 300);
    await router.waitForOutput(/accept failed .*Too many open files.*still serving/);
    await chatAnswers(router);
    await closedByServer(flood, 5_000);
    await chatAnswers(router);
    const { code } = await router.stop("SIGTERM");
    assert.equal(code, 0, "the router stops cleanly after the flood");
  } finally {
    await router.close();
  }
});

Deno.test("a body that does not arrive within limits.body_timeout_ms gets 408 and its record, and no provider is called", async () => {
  const bodyTimeoutMs = 400;
  const router = await startServeHealthy({
    policy: policyWith({ limits: { body_timeout_ms: bodyTimeoutMs } }),
  });
  const { hostname, port } = new URL(router.url);
  const conn = await Deno.connect({ hostname, port: Number(port) });
  try {
    // The head promises 200 bytes; 26 come, then nothing: a client that trickles or withholds its body.
    const started = performance.now();
    await writeAll(
      conn,
      encoder.encode(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\n" +
          'content-length: 200\r\n\r\n{"messages":[{"role":"us',
      ),
    );
    // Bounds the wait if the router never answers: the read then fails on the closed connection.
    const guard = setTimeout(() => conn.close(), 10_000);
    const answer = await readResponse(conn).finally(() => clearTimeout(guard));
    const waitedMs = performance.now() - started;
    assert.equal(answer.status, 408, answer.body);
    const error = JSON.parse(answer.body).error;
    assert.equal(error.code, "REQUEST_BODY_TIMEOUT");
    assert.match(error.message, new RegExp(`within ${bodyTimeoutMs} ms`));
    assert.equal(answer.headers.get("x-should-retry"), "true");
    assert.ok(waitedMs >= bodyTimeoutMs, `answered after ${Math.round(waitedMs)} ms`);
    const record = await router.record(answer.headers.get("x-request-id")!);
    assert.equal(record.failure?.code, "REQUEST_BODY_TIMEOUT");
    assert.deepEqual(record.attempts, []);
    assert.equal(router.ollama.requests.length, 0, "no provider saw the request");
    await chatAnswers(router);
  } finally {
    conn.close();
    await router.close();
  }
});
