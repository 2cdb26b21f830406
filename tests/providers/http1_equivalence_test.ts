/**
 * The HTTP/1.1 client is a fast path for plain-http upstreams; `fetch` is its plain twin. For each answer a
 * server may send, both must give the caller the same status, headers and body, or both must fail.
 */
import assert from "node:assert/strict";
import { CHUNKED_HEAD, lengthAnswer, newAgent, type Reply, ScriptedServer } from "./scripted_server.ts";

interface Seen {
  status: number;
  contentType: string | null;
  custom: string | null;
  body: string;
}

async function settle(response: Promise<{ status: number; headers: Headers; text(): Promise<string> }>) {
  try {
    const res = await response;
    const seen: Seen = {
      status: res.status,
      contentType: res.headers.get("content-type"),
      custom: res.headers.get("x-custom"),
      body: await res.text(),
    };
    return seen;
  } catch {
    return "failed";
  }
}

const big = "0123456789abcdef".repeat(64 * 1024);

const answers: Array<[string, Reply]> = [
  ["content-length", { parts: [lengthAnswer('{"ok":true}', "200 OK", ["content-type: application/json"])] }],
  ["an error status with a body", { parts: [lengthAnswer("no model", "404 Not Found", ["x-custom: a b"])] }],
  ["an empty content-length body", { parts: [lengthAnswer("")] }],
  ["a 1 MiB body in one write", { parts: [lengthAnswer(big)] }],
  [
    "chunked, split inside a size line and inside data",
    { parts: [CHUNKED_HEAD, "5\r\nhel", "lo\r\n1", "0\r\n, world! again\r\n0\r\n\r\n"] },
  ],
  ["chunked with an extension and trailers", {
    parts: [CHUNKED_HEAD, "3;name=value\r\nabc\r\n0\r\nx-trailer: 1\r\n\r\n"],
  }],
  ["framed by connection close", {
    parts: ["HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\nuntil the end"],
    close: true,
  }],
  ["HTTP/1.0 with keep-alive", {
    parts: ["HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 2\r\n\r\nok"],
  }],
  ["a 204", { parts: ["HTTP/1.1 204 No Content\r\nx-custom: none\r\n\r\n"] }],
  ["headers of mixed case and spacing", {
    parts: ["HTTP/1.1 200 OK\r\nContent-Type:   text/plain  \r\nX-Custom:v\r\nContent-Length: 1\r\n\r\nx"],
  }],
  ["a body cut short by close", { parts: ["HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"], close: true }],
  ["a chunked body cut short by close", { parts: [CHUNKED_HEAD, "5\r\nhello\r\n"], close: true }],
  ["a close without an answer", { parts: [], close: true }],
  ["a malformed status line", { parts: ["HTTP/1.1 OK\r\ncontent-length: 0\r\n\r\n"], close: true }],
];

for (const [what, reply] of answers) {
  Deno.test(`Http1Agent and fetch agree: ${what}`, async () => {
    await using server = new ScriptedServer([reply, reply]);
    using client = Deno.createHttpClient({ poolMaxIdlePerHost: 0 });
    const viaFetch = await settle(fetch(`${server.url}/a`, { client }));
    using agent = newAgent();
    const viaAgent = await settle(agent.fetch(`${server.url}/b`));
    assert.deepEqual(viaAgent, viaFetch);
  });
}
