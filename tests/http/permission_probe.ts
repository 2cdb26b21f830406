/**
 * Run by permissions_test.ts under the serve launcher's permission flags: tries what the router may and
 * may not do and prints one JSON line of outcomes ("ok" or the error class name).
 */
const [outside, inside, forbiddenHost] = Deno.args;

async function attempt(action: () => Promise<unknown>): Promise<string> {
  try {
    await action();
    return "ok";
  } catch (error) {
    return error instanceof Error ? error.name : "unknown";
  }
}

const outcome = {
  writeOutside: await attempt(() => Deno.writeTextFile(outside, "x")),
  writeInside: await attempt(() => Deno.writeTextFile(inside, "x")),
  connectForbidden: await attempt(async () => {
    const [hostname, port] = forbiddenHost.split(":");
    (await Deno.connect({ hostname, port: Number(port) })).close();
  }),
  readHome: await attempt(() => Deno.readTextFile("/etc/hostname")),
  envUnlisted: await attempt(() => Promise.resolve(Deno.env.get("HOME"))),
};
console.log(JSON.stringify(outcome));
