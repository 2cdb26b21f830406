/**
 * `pathnameOf` (lib/http/router.ts) reads the inference paths off the URL string and hands everything else to
 * the URL parser: for any URL a request can carry it gives what `new URL(url).pathname` gives.
 */
import assert from "node:assert/strict";
import fc from "fast-check";
import { pathnameOf } from "../../lib/http/router.ts";

const TRICKY = [
  "http://127.0.0.1:8080/v1/chat/completions",
  "http://127.0.0.1:8080/v1/messages",
  "http://[::1]:8080/v1/chat/completions",
  "http://localhost/v1/chat/completions?x=1",
  "http://localhost/v1/chat/completions#top",
  "http://localhost/v1/./chat/completions",
  "http://localhost/v1/chat/../chat/completions",
  "http://localhost/v1/chat%2Fcompletions",
  "http://localhost/v1/%63hat/completions",
  "http://localhost/V1/CHAT/COMPLETIONS",
  "http://localhost//v1/chat/completions",
  "http://localhost/v1/chat/completions/",
  "http://localhost/ui/../api/records",
  "http://localhost",
  "http://localhost/",
];

Deno.test("pathnameOf equals new URL().pathname on the tricky cases", () => {
  for (const url of TRICKY) assert.equal(pathnameOf(url), new URL(url).pathname, url);
});

Deno.test("pathnameOf equals new URL().pathname on random request URLs", () => {
  const segment = fc.oneof(
    fc.constantFrom("v1", "chat", "completions", "messages", ".", "..", "", "%2F", "%63hat", "ui", "api"),
    fc.stringMatching(/^[A-Za-z0-9._~%-]{0,8}$/),
  );
  const url = fc.tuple(
    fc.constantFrom("127.0.0.1:8080", "localhost", "[::1]:9", "router.internal"),
    fc.array(segment, { maxLength: 5 }),
    fc.constantFrom("", "?a=1", "#f", "?"),
  ).map(([host, parts, tail]) => `http://${host}/${parts.join("/")}${tail}`);
  fc.assert(fc.property(url, (u) => pathnameOf(u) === new URL(u).pathname), { numRuns: 2000 });
});
