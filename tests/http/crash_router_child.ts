/**
 * Crash-test child: the real router (`startServer` + `configFromEnv`) in its own process, configured by
 * the environment the parent passes. Prints its URL on stdout once it serves (recovery of the EDR
 * write-ahead log has run by then), and closes gracefully when its stdin ends; the parent usually
 * SIGKILLs it mid-load instead.
 */
import { configFromEnv, startServer } from "../../lib/http/mod.ts";

const router = await startServer(configFromEnv(Deno.env.toObject()), {
  log: (line) => console.error(`[router] ${line}`),
});
await router.health.probeNow();
const recovery = router.edr.stats().recovery;
console.error(`[router] recovered ${recovery.records} records, restored ${recovery.files_restored} files`);
console.log(router.url);
for await (const _ of Deno.stdin.readable) { /* wait for the parent to close stdin */ }
await router.close();
// As main.ts does after a graceful close.
Deno.exit(0);
