/**
 * Child process for the kill -9 test: opens the lease store in `Deno.args[0]`, reserves the remaining
 * args concurrently, prints one acknowledgement line per durable reservation, then "ready", and waits
 * on stdin until the parent kills it.
 */
import { LeaseStore } from "../../lib/authority/mod.ts";

const [dir, ...ids] = Deno.args;
const store = await LeaseStore.open(dir);
const now = Date.now();
await Promise.all(ids.map(async (id) => {
  const verdict = await store.reserve(id, now + 3_600_000, now);
  console.log(`${verdict} ${id}`);
}));
console.log("ready");
for await (const _ of Deno.stdin.readable) {
  // Stay alive until SIGKILL; the parent never closes stdin first.
}
