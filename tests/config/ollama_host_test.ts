/**
 * One reading of OLLAMA_HOST for the router, the launcher and replay. The expected values follow Ollama's
 * own client (envconfig TestHost in github.com/ollama/ollama): no scheme means port 11434, `http://`
 * without a port 80, `https://` 443; a path is kept. Where Ollama falls back quietly, this refuses.
 */
import assert from "node:assert/strict";
import {
  normalizeOllamaHost,
  OllamaHostError,
  ollamaNetEntry,
  parseOllamaHosts,
} from "../../lib/config/mod.ts";
import { configFromEnv } from "../../lib/http/mod.ts";
import { ollamaBaseUrl } from "../../lib/replay/mod.ts";

const FORMS: [string | undefined, string][] = [
  [undefined, "http://127.0.0.1:11434"],
  ["", "http://127.0.0.1:11434"],
  ["   ", "http://127.0.0.1:11434"],
  ["1.2.3.4", "http://1.2.3.4:11434"],
  ["gpu.lan", "http://gpu.lan:11434"],
  ["GPU.lan", "http://gpu.lan:11434"],
  ["gpu.lan:1234", "http://gpu.lan:1234"],
  [":1234", "http://127.0.0.1:1234"],
  ["0.0.0.0", "http://127.0.0.1:11434"],
  ["0.0.0.0:9999", "http://127.0.0.1:9999"],
  ["http://1.2.3.4", "http://1.2.3.4:80"],
  ["http://1.2.3.4:4321", "http://1.2.3.4:4321"],
  ["https://gpu.lan", "https://gpu.lan:443"],
  ["https://gpu.lan:4321", "https://gpu.lan:4321"],
  ["HTTP://gpu.lan:4321", "http://gpu.lan:4321"],
  ["[::1]", "http://[::1]:11434"],
  ["[::1]:1337", "http://[::1]:1337"],
  ["::1", "http://[::1]:11434"],
  ["[::]", "http://[::1]:11434"],
  ["http://[::1]", "http://[::1]:80"],
  ["https://[::1]:8443", "https://[::1]:8443"],
  ["gpu.lan:11434/", "http://gpu.lan:11434"],
  ["http://gpu.lan:11434///", "http://gpu.lan:11434"],
  ["https://example.com/ollama", "https://example.com:443/ollama"],
  ["http://h:1/ollama/", "http://h:1/ollama"],
  [" 1.2.3.4 ", "http://1.2.3.4:11434"],
  ['"1.2.3.4"', "http://1.2.3.4:11434"],
  ["'1.2.3.4'", "http://1.2.3.4:11434"],
];

const REFUSED: [string, RegExp][] = [
  ["unix:///tmp/ollama.sock", /scheme unix/],
  ["ftp://gpu.lan", /scheme ftp/],
  [":66000", /port "66000"/],
  ["gpu.lan:-1", /port "-1"/],
  ["gpu.lan:abc", /port "abc"/],
  ["gpu lan", /space/],
  ["http://user:pw@gpu.lan", /@/],
  ["gpu.lan:1?x=1", /\?/],
  ["[::1", /bracket/],
  ["[::1]x", /after the IPv6 bracket/],
  ["http://exa mple.com", /space/],
  ["%%%", /not a host name/],
];

Deno.test("OLLAMA_HOST: every form reads as Ollama's own client reads it", () => {
  for (const [value, expected] of FORMS) {
    assert.equal(normalizeOllamaHost(value), expected, `OLLAMA_HOST=${JSON.stringify(value)}`);
  }
});

Deno.test("OLLAMA_HOST: router, replay and the list reader agree on every form", () => {
  for (const [value, expected] of FORMS) {
    const router = configFromEnv({ OLLAMA_HOST: value });
    assert.equal(router.ollamaUrl, expected, `router, OLLAMA_HOST=${JSON.stringify(value)}`);
    assert.deepEqual(router.ollamaUrls, [expected]);
    assert.equal(ollamaBaseUrl(value), expected, `replay, OLLAMA_HOST=${JSON.stringify(value)}`);
    assert.deepEqual(parseOllamaHosts(value), [expected]);
  }
});

Deno.test("OLLAMA_HOST: a value it cannot read is refused with a message naming it", () => {
  for (const [value, why] of REFUSED) {
    assert.throws(() => normalizeOllamaHost(value), (error: unknown) => {
      assert.ok(error instanceof OllamaHostError, value);
      assert.match(error.message, why, value);
      assert.match(error.message, /^OLLAMA_HOST entry /);
      return true;
    });
    assert.throws(() => configFromEnv({ OLLAMA_HOST: value }), OllamaHostError, value);
  }
});

Deno.test("OLLAMA_HOST: a comma-separated list names several local hosts, in order", () => {
  assert.deepEqual(parseOllamaHosts("gpu1.lan:11434,gpu2.lan:11434"), [
    "http://gpu1.lan:11434",
    "http://gpu2.lan:11434",
  ]);
  assert.deepEqual(parseOllamaHosts(" gpu2.lan , https://gpu1.lan/ollama/ ,[::1]:7"), [
    "http://gpu2.lan:11434",
    "https://gpu1.lan:443/ollama",
    "http://[::1]:7",
  ]);
  const config = configFromEnv({ OLLAMA_HOST: "a.lan,b.lan:1" });
  assert.deepEqual(config.ollamaUrls, ["http://a.lan:11434", "http://b.lan:1"]);
  assert.equal(config.ollamaUrl, "http://a.lan:11434");
  assert.throws(() => parseOllamaHosts("a.lan,,b.lan"), /empty entry \(position 2 of 3\)/);
  assert.throws(() => parseOllamaHosts("a.lan,"), /empty entry/);
  assert.throws(() => parseOllamaHosts("a.lan,http://a.lan:11434"), /lists http:\/\/a\.lan:11434 twice/);
  assert.throws(() => parseOllamaHosts("a.lan,ftp://b"), /scheme ftp/);
});

Deno.test("OLLAMA_HOST: the --allow-net entry of a base URL names its port", () => {
  assert.equal(ollamaNetEntry("http://gpu.lan:11434"), "gpu.lan:11434");
  assert.equal(ollamaNetEntry("https://gpu.lan:443/ollama"), "gpu.lan:443");
  assert.equal(ollamaNetEntry("http://1.2.3.4:80"), "1.2.3.4:80");
  assert.equal(ollamaNetEntry("http://[::1]:11434"), "[::1]:11434");
});
