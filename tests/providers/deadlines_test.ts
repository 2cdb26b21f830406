import assert from "node:assert/strict";
import { deadlineAfter } from "../../lib/providers/deadlines.ts";

Deno.test("deadlines share one timer", async (t) => {
  await t.step("they fire in deadline order, whatever the order they were added in", async () => {
    const fired: string[] = [];
    const last = Promise.withResolvers<void>();
    deadlineAfter(30, () => {
      fired.push("30ms");
      last.resolve();
    });
    deadlineAfter(15, () => fired.push("15ms"));
    deadlineAfter(1, () => fired.push("1ms"));
    await last.promise;
    assert.deepEqual(fired, ["1ms", "15ms", "30ms"]);
  });

  await t.step("a cancelled deadline never fires and the others still do", async () => {
    const fired: string[] = [];
    const done = Promise.withResolvers<void>();
    const early = deadlineAfter(1, () => fired.push("cancelled"));
    deadlineAfter(10, () => {
      fired.push("kept");
      done.resolve();
    });
    early.cancel();
    early.cancel();
    await done.promise;
    assert.deepEqual(fired, ["kept"]);
  });

  await t.step("a deadline that does not keep the process alive still fires while another does", async () => {
    const fired: string[] = [];
    const done = Promise.withResolvers<void>();
    deadlineAfter(1, () => fired.push("background"), { keepAlive: false });
    deadlineAfter(20, () => {
      fired.push("foreground");
      done.resolve();
    });
    await done.promise;
    assert.deepEqual(fired, ["background", "foreground"]);
  });
});

Deno.test("a process whose deadlines were all cancelled exits at once", async () => {
  // A timer left armed would keep the child alive for the full minute; the guard only stops a hang.
  const module = new URL("../../lib/providers/deadlines.ts", import.meta.url).href;
  const script = `import { deadlineAfter } from "${module}";
    const deadlines = Array.from({ length: 100 }, (_, i) => deadlineAfter(60_000 + i, () => Deno.exit(3)));
    for (const deadline of deadlines) deadline.cancel();`;
  const child = new Deno.Command(Deno.execPath(), {
    args: ["eval", "--no-check", script],
    stdout: "null",
    stderr: "null",
    signal: AbortSignal.timeout(20_000),
  });
  const { code, signal } = await child.output();
  assert.equal(signal, null, "the child had to be killed: a deadline timer kept it alive");
  assert.equal(code, 0);
});
