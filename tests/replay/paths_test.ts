import assert from "node:assert/strict";
import { join } from "node:path";
import {
  artifactsDirOfEdr,
  dayPathOf,
  ollamaBaseUrl,
  reportPathOf,
  resolveArtifactsDir,
  resolvePointer,
} from "../../lib/replay/mod.ts";

Deno.test("replay paths stay inside the artifacts folder", async (t) => {
  const dir = await Deno.makeTempDir({ prefix: "hi-paths-" });
  try {
    await Deno.mkdir(join(dir, "inputs"));
    await Deno.writeTextFile(join(dir, "inputs", "a.json"), "{}");

    await t.step("a relative pointer to an existing file inside resolves", async () => {
      const r = await resolvePointer(dir, "inputs/a.json");
      assert.equal(r.ok, true);
    });

    await t.step("absolute, climbing, empty and missing pointers are refused", async () => {
      for (
        const pointer of [
          "/etc/passwd",
          "../x.json",
          "inputs/../../x.json",
          "",
          null,
          "inputs/none.json",
          ".",
        ]
      ) {
        const r = await resolvePointer(dir, pointer);
        assert.equal(r.ok, false, String(pointer));
      }
    });

    await t.step("a symlink inside that points outside is refused", async () => {
      const outside = await Deno.makeTempFile();
      try {
        await Deno.symlink(outside, join(dir, "inputs", "link.json"));
        const r = await resolvePointer(dir, "inputs/link.json");
        assert.equal(r.ok, false);
      } finally {
        await Deno.remove(outside);
      }
    });

    await t.step("a report goes under replay/ by the record's UTC day, and only for a hex hash", () => {
      const hash = "a".repeat(64);
      assert.equal(
        reportPathOf(dir, { timestamp: "2026-11-27T23:59:59.123Z", decision_core_hash: hash }),
        join(dir, "replay", "2026", "11", "27", `${hash}.json`),
      );
      assert.equal(
        reportPathOf(dir, { timestamp: "2026-11-27T23:59:59.123Z", decision_core_hash: "../x" }),
        null,
      );
      assert.equal(dayPathOf("not a date"), null);
    });

    await t.step("the artifacts folder is found from a record, a flag or the environment", async () => {
      const record = join(dir, "edr", "2026", "11", "27", "x.json");
      assert.equal(artifactsDirOfEdr(record), dir);
      assert.equal(artifactsDirOfEdr("/tmp/elsewhere/x.json"), null);
      assert.equal(await resolveArtifactsDir(record, { flag: "/a" }), "/a");
      assert.equal(await resolveArtifactsDir(record, { env: "/b" }), "/b");
      assert.equal(await resolveArtifactsDir(record, {}), dir);
      await Deno.mkdir(join(dir, "edr"), { recursive: true });
      assert.equal(await resolveArtifactsDir(dir, { tree: true }), dir);
      assert.equal(await resolveArtifactsDir(join(dir, "edr"), { tree: true }), dir);
    });

    await t.step("OLLAMA_HOST accepts host:port, a URL, or nothing", () => {
      assert.equal(ollamaBaseUrl(undefined), "http://127.0.0.1:11434");
      assert.equal(ollamaBaseUrl("127.0.0.1:9999"), "http://127.0.0.1:9999");
      assert.equal(ollamaBaseUrl("http://gpu-box:11434/"), "http://gpu-box:11434");
      assert.equal(ollamaBaseUrl("gpu-box"), "http://gpu-box:11434");
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
