import assert from "node:assert/strict";
import {
  Http1Agent,
  Http1ProtocolError,
  routedUpstreamFetch,
  type UpstreamInit,
} from "../../lib/providers/http1_client.ts";

import {
  CHUNKED_HEAD,
  concatBytes,
  decoder,
  encoder,
  lengthAnswer,
  newAgent,
  outcome,
  parseHead,
  readExactly,
  type Reply,
  ScriptedServer,
} from "./scripted_server.ts";

Deno.test("Http1Agent: content-length answers and the request it sends", async (t) => {
  await t.step(
    "a JSON answer is parsed; the request has its path, host, UTF-8 byte length and headers",
    async () => {
      const answer = JSON.stringify({ message: "héllo 🙂" });
      await using server = new ScriptedServer([
        { parts: [lengthAnswer(answer, "200 OK", ["Content-Type: application/json", "X-Request-Id: r-1"])] },
      ]);
      using agent = newAgent();
      const body = JSON.stringify({ prompt: "café ☕ 日本語" });
      const res = await agent.fetch(`${server.url}/v1/chat?stream=false&n=1`, {
        method: "POST",
        headers: { "content-type": "application/json", "X-Api-Key": "key-1" },
        body,
      });
      assert.equal(res.status, 200);
      assert.equal(res.ok, true);
      assert.equal(res.headers.get("content-type"), "application/json");
      assert.equal(res.headers.get("x-request-id"), "r-1");
      assert.deepEqual(await res.json(), { message: "héllo 🙂" });

      assert.equal(server.requests.length, 1);
      const [seen] = server.requests;
      const { line, headers } = parseHead(seen.head);
      assert.equal(line, "POST /v1/chat?stream=false&n=1 HTTP/1.1");
      assert.equal(headers.get("host"), `127.0.0.1:${server.port}`);
      const byteLength = encoder.encode(body).length;
      assert.ok(byteLength > body.length, "the body must have multi-byte characters to mean anything");
      assert.equal(headers.get("content-length"), String(byteLength));
      assert.equal(headers.get("content-type"), "application/json");
      assert.equal(headers.get("x-api-key"), "key-1");
      assert.equal(decoder.decode(seen.body), body);
    },
  );

  await t.step(
    "framing headers from the caller are ignored, so they cannot desync the connection",
    async () => {
      await using server = new ScriptedServer([{ parts: [lengthAnswer("one")] }, {
        parts: [lengthAnswer("two")],
      }]);
      using agent = newAgent();
      const res = await agent.fetch(`${server.url}/a`, {
        method: "POST",
        headers: {
          Host: "evil.example",
          "Content-Length": "999",
          Connection: "close",
          "Transfer-Encoding": "chunked",
        },
        body: "abc",
      });
      assert.equal(await res.text(), "one");
      assert.equal(await (await agent.fetch(`${server.url}/b`)).text(), "two");

      const { headers, names } = parseHead(server.requests[0].head);
      assert.equal(headers.get("host"), `127.0.0.1:${server.port}`);
      assert.equal(headers.get("content-length"), "3");
      assert.ok(!names.includes("connection") && !names.includes("transfer-encoding"), names.join(","));
      assert.equal(decoder.decode(server.requests[0].body), "abc");
      assert.equal(server.accepted, 1);
    },
  );

  await t.step(
    "a GET has no content-length, a lowercase method is sent upper-cased, a byte body is sent as is",
    async () => {
      await using server = new ScriptedServer([{ parts: [lengthAnswer("")] }, { parts: [lengthAnswer("")] }]);
      using agent = newAgent();
      assert.equal(await (await agent.fetch(`${server.url}/models`)).text(), "");
      const bytes = new Uint8Array([0, 1, 2, 255]);
      assert.equal(await (await agent.fetch(`${server.url}/put`, { method: "put", body: bytes })).text(), "");

      const get = parseHead(server.requests[0].head);
      assert.equal(get.line, "GET /models HTTP/1.1");
      assert.ok(!get.names.includes("content-length"));
      const put = parseHead(server.requests[1].head);
      assert.equal(put.line, "PUT /put HTTP/1.1");
      assert.equal(put.headers.get("content-length"), "4");
      assert.deepEqual(server.requests[1].body, bytes);
    },
  );

  await t.step(
    "a non-2xx answer with a JSON error body resolves with ok false and a readable body",
    async () => {
      const error = JSON.stringify({ error: { message: "model is loading", type: "overloaded" } });
      await using server = new ScriptedServer([
        { parts: [lengthAnswer(error, "503 Service Unavailable", ["content-type: application/json"])] },
      ]);
      using agent = newAgent();
      const res = await agent.fetch(`${server.url}/v1/chat`, { method: "POST", body: "{}" });
      assert.equal(res.status, 503);
      assert.equal(res.ok, false);
      assert.deepEqual(await res.json(), { error: { message: "model is loading", type: "overloaded" } });
    },
  );
});

Deno.test("Http1Agent: chunked answers", async (t) => {
  // Extensions, a multi-byte character and trailers, so every kind of awkward split point occurs.
  const body = encoder.encode(
    "5\r\nhello\r\n1a;foo=bar\r\nabcdefghijklmnopqrstuvwxyz\r\n6\r\né🙂\r\n0\r\nx-trailer: yes\r\n\r\n",
  );
  const expected = "helloabcdefghijklmnopqrstuvwxyzé🙂";

  await t.step("text() is exact wherever the chunked body is split across two socket writes", async () => {
    const gates = Array.from({ length: body.length + 1 }, () => Promise.withResolvers<void>());
    // The second part is written only after fetch resolved, so the client has already consumed the
    // head and the first part: each split is really seen as two reads.
    await using server = new ScriptedServer(gates.map((gate, split) => ({
      parts: [
        concatBytes(encoder.encode(CHUNKED_HEAD), body.subarray(0, split)),
        () => gate.promise,
        body.subarray(split),
      ],
    })));
    using agent = newAgent();
    for (const [split, gate] of gates.entries()) {
      const res = await agent.fetch(`${server.url}/stream`);
      gate.resolve();
      assert.equal(await res.text(), expected, `split at byte ${split}`);
    }
    // Trailers included, every answer was read to its end: one connection served them all.
    assert.equal(server.accepted, 1);
  });

  await t.step("a body reader gets each burst as it arrives and the exact bytes overall", async () => {
    const gates = Array.from({ length: 4 }, () => Promise.withResolvers<void>());
    await using server = new ScriptedServer([{
      parts: [
        `${CHUNKED_HEAD}5\r\nhel`, // inside chunk data
        () => gates[0].promise,
        "lo", // between data and its CRLF
        () => gates[1].promise,
        "\r\n3;foo=bar\r\nabc\r\n1", // with an extension, then inside a size line
        () => gates[2].promise,
        "a\r\nabcdefghijklmnopqrstuvwxyz\r", // inside the CRLF after data
        () => gates[3].promise,
        "\n0\r\nx-trailer: yes\r\nx-other: 1\r\n\r\n",
      ],
    }]);
    using agent = newAgent();
    const res = await agent.fetch(`${server.url}/stream`);
    const reader = res.body!.getReader();
    for (const [i, burst] of ["hel", "lo", "abc", "abcdefghijklmnopqrstuvwxyz"].entries()) {
      await readExactly(reader, burst);
      gates[i].resolve();
    }
    assert.deepEqual(await reader.read(), { done: true, value: undefined });
    assert.equal(agent.openConnections, 1, "a fully read chunked answer leaves the connection idle");
  });

  await t.step("a body cut short (no last chunk, then close) errors text() and the body stream", async () => {
    await using server = new ScriptedServer([
      { parts: [`${CHUNKED_HEAD}5\r\nhello\r\n`], close: true },
      { parts: [`${CHUNKED_HEAD}5\r\nhello\r\n3\r\nab`], close: true },
    ]);
    using agent = newAgent();
    const first = await agent.fetch(`${server.url}/a`);
    await assert.rejects(first.text(), Http1ProtocolError);

    const second = await agent.fetch(`${server.url}/b`);
    const reader = second.body!.getReader();
    await readExactly(reader, "helloab");
    await assert.rejects(reader.read(), Http1ProtocolError);
    assert.equal(agent.openConnections, 0);
  });
});

Deno.test("Http1Agent: connection reuse", async (t) => {
  await t.step("sequential requests to one server share one connection", async () => {
    await using server = new ScriptedServer([{ parts: [lengthAnswer("one")] }, {
      parts: [lengthAnswer("two")],
    }]);
    using agent = newAgent();
    assert.equal(await (await agent.fetch(`${server.url}/1`)).text(), "one");
    assert.equal(agent.openConnections, 1);
    assert.equal(await (await agent.fetch(`${server.url}/2`)).text(), "two");
    assert.equal(server.accepted, 1);
    assert.deepEqual(server.requests.map((r) => r.connection), [0, 0]);
  });

  await t.step("an answer with connection: close is not reused", async () => {
    // The server keeps its side open: had the client reused the socket, request 2 would arrive on it.
    await using server = new ScriptedServer([
      { parts: [lengthAnswer("one", "200 OK", ["Connection: close"])] },
      { parts: [lengthAnswer("two")] },
    ]);
    using agent = newAgent();
    assert.equal(await (await agent.fetch(`${server.url}/1`)).text(), "one");
    assert.equal(agent.openConnections, 0);
    assert.equal(await server.ended(0), "eof");
    assert.equal(await (await agent.fetch(`${server.url}/2`)).text(), "two");
    assert.deepEqual(server.requests.map((r) => r.connection), [0, 1]);
  });

  await t.step("an HTTP/1.0 answer is reused only when it says keep-alive", async () => {
    await using server = new ScriptedServer([
      { parts: ["HTTP/1.0 200 OK\r\ncontent-length: 3\r\n\r\none"] },
      { parts: ["HTTP/1.0 200 OK\r\nconnection: keep-alive\r\ncontent-length: 3\r\n\r\ntwo"] },
      { parts: [lengthAnswer("three")] },
    ]);
    using agent = newAgent();
    assert.equal(await (await agent.fetch(`${server.url}/1`)).text(), "one");
    assert.equal(await (await agent.fetch(`${server.url}/2`)).text(), "two");
    assert.equal(await (await agent.fetch(`${server.url}/3`)).text(), "three");
    assert.deepEqual(server.requests.map((r) => r.connection), [0, 1, 1]);
  });

  await t.step("an answer framed by connection close is read to the end and not reused", async () => {
    const gate = Promise.withResolvers<void>();
    await using server = new ScriptedServer([
      {
        parts: [
          "HTTP/1.1 200 OK\r\ncontent-type: text/plain\r\n\r\npart one, ",
          () => gate.promise,
          "part two",
        ],
        close: true,
      },
      { parts: [lengthAnswer("next")] },
    ]);
    using agent = newAgent();
    const res = await agent.fetch(`${server.url}/1`);
    gate.resolve();
    assert.equal(await res.text(), "part one, part two");
    assert.equal(agent.openConnections, 0);
    assert.equal(await (await agent.fetch(`${server.url}/2`)).text(), "next");
    assert.deepEqual(server.requests.map((r) => r.connection), [0, 1]);
  });

  await t.step("an answer followed by bytes nobody asked for is not reused", async () => {
    await using server = new ScriptedServer([
      { parts: [`${lengthAnswer("one")}HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nstray`] },
      { parts: [lengthAnswer("two")] },
    ]);
    using agent = newAgent();
    assert.equal(await (await agent.fetch(`${server.url}/1`)).text(), "one");
    assert.equal(agent.openConnections, 0);
    assert.equal(await (await agent.fetch(`${server.url}/2`)).text(), "two");
    assert.deepEqual(server.requests.map((r) => r.connection), [0, 1]);
  });

  await t.step("with maxIdlePerHost 0 no connection is kept", async () => {
    await using server = new ScriptedServer([{ parts: [lengthAnswer("one")] }, {
      parts: [lengthAnswer("two")],
    }]);
    using agent = newAgent({ maxIdlePerHost: 0 });
    assert.equal(await (await agent.fetch(`${server.url}/1`)).text(), "one");
    assert.equal(agent.openConnections, 0);
    assert.equal(await (await agent.fetch(`${server.url}/2`)).text(), "two");
    assert.equal(server.accepted, 2);
  });

  await t.step(
    "a connection the server closed while idle is replaced without the caller noticing",
    async () => {
      await using server = new ScriptedServer([
        { parts: [lengthAnswer("first")], close: true },
        { parts: [lengthAnswer("second")] },
      ]);
      using agent = newAgent();
      assert.equal(await (await agent.fetch(`${server.url}/1`)).text(), "first");
      assert.equal(agent.openConnections, 1, "the answer was keep-alive, so the client pooled it");
      assert.equal(await server.ended(0), "hangup");

      const res = await agent.fetch(`${server.url}/2`, { method: "POST", body: "payload ✓" });
      assert.equal(await res.text(), "second");
      assert.equal(server.accepted, 2);
      assert.equal(server.requests.length, 2);
      assert.equal(server.requests[1].connection, 1);
      assert.equal(decoder.decode(server.requests[1].body), "payload ✓");
    },
  );

  await t.step("a 204 has an empty body and its connection is reused", async () => {
    await using server = new ScriptedServer([
      { parts: ["HTTP/1.1 204 No Content\r\nx-id: 1\r\n\r\n"] },
      { parts: [lengthAnswer("after")] },
    ]);
    using agent = newAgent();
    const res = await agent.fetch(`${server.url}/1`, { method: "DELETE" });
    assert.equal(res.status, 204);
    assert.equal(res.ok, true);
    assert.equal(res.headers.get("x-id"), "1");
    assert.equal(await res.text(), "");
    assert.equal(await (await agent.fetch(`${server.url}/2`)).text(), "after");
    assert.equal(server.accepted, 1);
  });
});

Deno.test("Http1Agent: broken answers", async (t) => {
  await t.step(
    "a body shorter than its content-length, then close, errors text() and the body stream",
    async () => {
      await using server = new ScriptedServer([
        { parts: ["HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"], close: true },
        { parts: ["HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc"], close: true },
      ]);
      using agent = newAgent();
      await assert.rejects((await agent.fetch(`${server.url}/1`)).text(), Http1ProtocolError);
      const reader = (await agent.fetch(`${server.url}/2`)).body!.getReader();
      await readExactly(reader, "abc");
      await assert.rejects(reader.read(), Http1ProtocolError);
      assert.equal(agent.openConnections, 0);
    },
  );

  const malformed: [string, string][] = [
    ["a malformed status line", "HTTP/1.1 OK\r\ncontent-length: 0\r\n\r\n"],
    ["a status line of another protocol", "HTTP/2 200 OK\r\ncontent-length: 0\r\n\r\n"],
    ["a header line without a colon", "HTTP/1.1 200 OK\r\ncontent-length 0\r\n\r\n"],
    ["a header line starting with a colon", "HTTP/1.1 200 OK\r\n: value\r\n\r\n"],
    ["an invalid content-length", "HTTP/1.1 200 OK\r\ncontent-length: 1x\r\n\r\n"],
    ["conflicting content-lengths", "HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab"],
    ["a head cut off by close", "HTTP/1.1 200 OK\r\ncontent-le"],
    ["a close without any answer", ""],
  ];
  for (const [what, bytes] of malformed) {
    await t.step(`${what} rejects with Http1ProtocolError`, async () => {
      await using server = new ScriptedServer([{ parts: [bytes], close: true }]);
      using agent = newAgent();
      await assert.rejects(agent.fetch(`${server.url}/x`), Http1ProtocolError);
      assert.equal(agent.openConnections, 0);
    });
  }

  await t.step("a malformed chunk size errors the body", async () => {
    await using server = new ScriptedServer([{ parts: [`${CHUNKED_HEAD}zz\r\nhello\r\n0\r\n\r\n`] }]);
    using agent = newAgent();
    await assert.rejects((await agent.fetch(`${server.url}/x`)).text(), Http1ProtocolError);
    assert.equal(agent.openConnections, 0);
  });

  await t.step("1xx interim answers before the real one are skipped", async () => {
    await using server = new ScriptedServer([
      {
        parts: [
          "HTTP/1.1 100 Continue\r\n\r\n",
          "HTTP/1.1 103 Early Hints\r\nlink: </style.css>\r\n\r\nHTTP/1.1 201 Cre",
          "ated\r\ncontent-length: 2\r\n\r\nok",
        ],
      },
      { parts: [lengthAnswer("again")] },
    ]);
    using agent = newAgent();
    const res = await agent.fetch(`${server.url}/x`, { method: "POST", body: "{}" });
    assert.equal(res.status, 201);
    assert.equal(
      res.headers.get("link"),
      null,
      "headers of an interim answer must not leak into the final one",
    );
    assert.equal(await res.text(), "ok");
    assert.equal(await (await agent.fetch(`${server.url}/y`)).text(), "again");
    assert.equal(server.accepted, 1);
  });
});

Deno.test("Http1Agent: aborts", async (t) => {
  await t.step("an abort while waiting for the head rejects the fetch and closes the socket", async () => {
    await using server = new ScriptedServer([{ parts: [] }]);
    using agent = newAgent();
    const controller = new AbortController();
    const pending = agent.fetch(`${server.url}/slow`, {
      method: "POST",
      body: "{}",
      signal: controller.signal,
    });
    await server.received(0);
    controller.abort();
    await assert.rejects(pending);
    assert.equal(await server.ended(0), "eof");
    assert.equal(agent.openConnections, 0);
  });

  await t.step("an abort while a body read is pending errors the read and closes the socket", async () => {
    await using server = new ScriptedServer([{ parts: [`${CHUNKED_HEAD}7\r\npartial\r\n`] }]);
    using agent = newAgent();
    const controller = new AbortController();
    const res = await agent.fetch(`${server.url}/stream`, { signal: controller.signal });
    const reader = res.body!.getReader();
    await readExactly(reader, "partial");
    const next = reader.read();
    controller.abort();
    await assert.rejects(next);
    assert.equal(await server.ended(0), "eof");
    assert.equal(agent.openConnections, 0);
  });

  await t.step("an already aborted signal rejects with its reason and never connects", async () => {
    await using server = new ScriptedServer([{ parts: [lengthAnswer("ok")] }]);
    using agent = newAgent();
    const reason = new Error("caller went away");
    await assert.rejects(
      agent.fetch(`${server.url}/x`, { signal: AbortSignal.abort(reason) }),
      (e) => e === reason,
    );
    // Had the aborted call connected, its connection would have been accepted before this one.
    assert.equal(await (await agent.fetch(`${server.url}/y`)).text(), "ok");
    assert.equal(server.accepted, 1);
    assert.equal(server.requests[0].head.split("\r\n")[0], "GET /y HTTP/1.1");
  });
});

Deno.test("Http1Agent: request validation", async (t) => {
  const refused: [string, UpstreamInit | string][] = [
    ["a header value with CR/LF", { headers: { "x-note": "a\r\nx-injected: 1" } }],
    ["a header value with a bare LF", { headers: { "x-note": "a\nb" } }],
    ["a header name with CR/LF", { headers: { "x-a\r\nx-injected": "1" } }],
    ["a method that is not a token", { method: "GET /evil HTTP/1.1\r\n" }],
    ["an https URL", "https://127.0.0.1:1/x"],
  ];
  for (const [what, request] of refused) {
    await t.step(`${what} is refused with a TypeError before anything is sent`, async () => {
      await using server = new ScriptedServer([{ parts: [lengthAnswer("ok")] }]);
      using agent = newAgent();
      const [url, init] = typeof request === "string" ? [request, {}] : [`${server.url}/x`, request];
      await assert.rejects(agent.fetch(url, init), TypeError);
      // Had the refused call connected, its connection would have been accepted before this one.
      assert.equal(await (await agent.fetch(`${server.url}/ok`)).text(), "ok");
      assert.equal(server.accepted, 1);
      assert.equal(server.requests.length, 1);
      assert.equal(server.requests[0].head.split("\r\n")[0], "GET /ok HTTP/1.1");
    });
  }
});

Deno.test("Http1Agent: close()", async (t) => {
  await t.step("closes idle connections, and later fetches reject", async () => {
    await using server = new ScriptedServer([{ parts: [lengthAnswer("one")] }]);
    const agent = new Http1Agent();
    assert.equal(await (await agent.fetch(`${server.url}/1`)).text(), "one");
    assert.equal(agent.openConnections, 1);
    agent.close();
    assert.equal(agent.openConnections, 0);
    assert.equal(await server.ended(0), "eof");
    await assert.rejects(agent.fetch(`${server.url}/2`), TypeError);
    assert.equal(server.accepted, 1);
  });

  await t.step("a connection busy during close() is closed when its answer ends, not pooled", async () => {
    const gate = Promise.withResolvers<void>();
    await using server = new ScriptedServer([
      { parts: ["HTTP/1.1 200 OK\r\ncontent-length: 4\r\n\r\nab", () => gate.promise, "cd"] },
    ]);
    const agent = new Http1Agent();
    const res = await agent.fetch(`${server.url}/1`);
    agent.close();
    assert.equal(agent.openConnections, 1);
    gate.resolve();
    assert.equal(await res.text(), "abcd");
    assert.equal(agent.openConnections, 0);
    assert.equal(await server.ended(0), "eof");
  });
});

Deno.test("routedUpstreamFetch", async (t) => {
  await t.step("sends http: URLs through the agent and https: URLs through the global fetch", async () => {
    await using server = new ScriptedServer([{ parts: [lengthAnswer("from agent")] }]);
    using agent = newAgent();
    const upstreamFetch = routedUpstreamFetch(agent);
    assert.equal(await (await upstreamFetch(`${server.url}/plain`, {})).text(), "from agent");
    assert.equal(server.requests.length, 1);

    const globalFetch = globalThis.fetch;
    const calls: string[] = [];
    globalThis.fetch = (input) => {
      calls.push(String(input));
      return Promise.resolve(new Response("from fetch"));
    };
    try {
      const res = await upstreamFetch("https://api.example.com/v1/messages", { method: "POST", body: "{}" });
      assert.equal(await res.text(), "from fetch");
    } finally {
      globalThis.fetch = globalFetch;
    }
    assert.deepEqual(calls, ["https://api.example.com/v1/messages"]);
    assert.equal(server.requests.length, 1);
  });
});

// A server that sent anything back may have acted on the request: resending it would run a POST twice
// and hand the caller the second answer as if nothing had happened. A 1xx interim answer counts too: the
// server has started on the request, so a close after it is not a stale connection.
const nonStaleSecondAnswers: Array<[string, Reply]> = [
  ["a malformed answer", { parts: ["HTTP/1.1 200 OK\r\nthis line has no colon\r\n\r\n"] }],
  ["a close after a 1xx answer", { parts: ["HTTP/1.1 100 Continue\r\n\r\n"], close: true }],
];
for (const [what, second] of nonStaleSecondAnswers) {
  Deno.test({
    name: `Http1Agent: ${what} on a reused connection is not retried`,
    fn: async () => {
      await using server = new ScriptedServer([
        { parts: [lengthAnswer("first")] },
        second,
        { parts: [lengthAnswer("second delivery")] },
      ]);
      using agent = newAgent();
      assert.equal(await (await agent.fetch(`${server.url}/1`)).text(), "first");
      const result = await outcome(agent.fetch(`${server.url}/charge`, { method: "POST", body: "once" }));
      assert.ok(result instanceof Http1ProtocolError, `got ${JSON.stringify(result)}`);
      assert.equal(server.requests.length, 2, "the POST must reach the server once");
    },
  });
}

// A bad header name must fail the call where upstream errors are mapped, not later in an adapter that
// reads `headers`.
Deno.test({
  name: "Http1Agent: a header name that is not a token rejects with Http1ProtocolError",
  fn: async () => {
    await using server = new ScriptedServer([
      { parts: ["HTTP/1.1 200 OK\r\nbad name: x\r\ncontent-length: 2\r\n\r\nok"] },
    ]);
    using agent = newAgent();
    let result: unknown;
    try {
      const res = await agent.fetch(`${server.url}/x`);
      try {
        result = res.headers.get("content-length");
      } catch (error) {
        result = error;
      } finally {
        await res.body?.cancel();
      }
    } catch (error) {
      result = error;
    }
    assert.ok(result instanceof Http1ProtocolError, `got ${String(result)}`);
  },
});
