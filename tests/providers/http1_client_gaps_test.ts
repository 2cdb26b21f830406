/**
 * The three gaps issue #17 named in the HTTP/1.1 client: a response framed two ways, idle sockets that
 * reuse alone never reaches, and a read that waits forever.
 */
import assert from "node:assert/strict";
import { Http1ProtocolError } from "../../lib/providers/http1_client.ts";
import { lengthAnswer, newAgent, ScriptedServer } from "./scripted_server.ts";

Deno.test("Http1Agent: transfer-encoding together with content-length is refused, not reused", async () => {
  await using server = new ScriptedServer([
    {
      parts: [
        "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\ncontent-length: 5\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
      ],
    },
    { parts: [lengthAnswer("next")] },
  ]);
  using agent = newAgent();
  await assert.rejects(agent.fetch(`${server.url}/a`), (error) => {
    assert.ok(error instanceof Http1ProtocolError);
    assert.match(error.message, /both transfer-encoding and content-length/);
    return true;
  });
  assert.equal(agent.openConnections, 0);
  assert.equal(await (await agent.fetch(`${server.url}/b`)).text(), "next");
  assert.equal(server.accepted, 2, "the second request must go out on a fresh connection");
});

Deno.test("Http1Agent: idle sockets past the idle timeout are closed with no further traffic", async () => {
  const bothAsked = Promise.withResolvers<void>();
  let asked = 0;
  const waitForBoth = () => {
    if (++asked === 2) bothAsked.resolve();
    return bothAsked.promise;
  };
  await using server = new ScriptedServer([
    { parts: [waitForBoth, lengthAnswer("one")] },
    { parts: [waitForBoth, lengthAnswer("two")] },
  ]);
  using agent = newAgent({ idleTimeoutMs: 40 });
  const texts = await Promise.all(
    ["/1", "/2"].map(async (path) => (await agent.fetch(`${server.url}${path}`)).text()),
  );
  assert.deepEqual(texts.sort(), ["one", "two"]);
  assert.equal(agent.openConnections, 2);
  // The client, not the server, ends both connections: the server sees end-of-file on each.
  assert.deepEqual(await Promise.all([server.ended(0), server.ended(1)]), ["eof", "eof"]);
  assert.equal(agent.openConnections, 0);
});

Deno.test("Http1Agent: a read that waits past the read timeout closes its socket", async (t) => {
  const never = Promise.withResolvers<void>();
  await t.step("before the response head: the fetch rejects", async () => {
    await using server = new ScriptedServer([{ parts: [() => never.promise, lengthAnswer("late")] }]);
    using agent = newAgent({ readTimeoutMs: 60 });
    await assert.rejects(agent.fetch(`${server.url}/stall`), /no byte for 60 ms/);
    // The server is still stalled, so it cannot see the close yet; the agent holds no socket any more.
    assert.equal(agent.openConnections, 0);
  });
  await t.step("inside the body: the body read errors", async () => {
    await using server = new ScriptedServer([
      { parts: ["HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\nabc", () => never.promise, "defghij"] },
    ]);
    using agent = newAgent({ readTimeoutMs: 60 });
    const response = await agent.fetch(`${server.url}/stall`);
    await assert.rejects(response.text(), (error) => {
      assert.ok(error instanceof Http1ProtocolError);
      assert.match(error.message, /no byte for 60 ms/);
      return true;
    });
    assert.equal(agent.openConnections, 0);
  });
});
