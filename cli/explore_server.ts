/**
 * The sandboxed half of `deno task explore` (cli/explore.ts starts it with scoped permissions):
 * `explore_server.ts DIR PORT` serves the explorer over DIR on 127.0.0.1:PORT, and stops when its
 * launcher is gone (its stdin closes) or on SIGINT/SIGTERM.
 */
import { createExplorer, FileRecordSource, UI_DIR } from "../lib/explorer/mod.ts";
import { parseOllamaHosts } from "../lib/config/mod.ts";

if (import.meta.main) {
  const [dir, portText] = Deno.args;
  let ollamaUrls = parseOllamaHosts(undefined);
  try {
    ollamaUrls = parseOllamaHosts(Deno.env.get("OLLAMA_HOST"));
  } catch {
    // an OLLAMA_HOST that does not parse: replay reports the default host unreachable instead
  }
  const explorer = createExplorer({ source: new FileRecordSource(dir, { ollamaUrls }), uiDir: UI_DIR });
  const controller = new AbortController();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: Number(portText),
    signal: controller.signal,
    onListen: ({ port }) => {
      console.log(`EDR explorer on http://127.0.0.1:${port}/ui (records from ${dir}); Ctrl-C stops it`);
    },
  }, async (request) => {
    const path = new URL(request.url).pathname;
    if (path === "/") return Response.redirect(new URL("/ui", request.url), 302);
    return await explorer(request) ??
      new Response(JSON.stringify({ error: { message: `no route ${path}; open /ui`, code: "NOT_FOUND" } }), {
        status: 404,
        headers: { "content-type": "application/json" },
      });
  });
  for (const signal of ["SIGINT", "SIGTERM"] as const) {
    Deno.addSignalListener(signal, () => controller.abort());
  }
  // The launcher holds the other end of stdin; end-of-file means it is gone.
  (async () => {
    for await (const _ of Deno.stdin.readable) { /* never written */ }
    controller.abort();
  })();
  await server.finished;
  Deno.exit(0);
}
