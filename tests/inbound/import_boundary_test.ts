/**
 * The seam between what clients speak and what upstreams speak, read from `deno info --json`: the
 * canonical chat module imports nothing; inbound dialects (lib/inbound) and provider adapters
 * (lib/providers) each import lib/canonical and never each other; and every file in those folders is
 * reachable from its doors (`mod.ts`), so none lies there unused.
 */
import assert from "node:assert/strict";
import { importGraph as repositoryImportGraph, REPO } from "../architecture/import_graph.ts";

const LIB = new URL("lib/", `file://${REPO}`);

/**
 * Every lib module reachable from `doors` (paths relative to lib/), with the modules each imports (type-only
 * imports too), all relative to lib/.
 */
async function importGraph(doors: string[]): Promise<Map<string, string[]>> {
  const underLib = (path: string) => path.startsWith("lib/") ? path.slice("lib/".length) : `../${path}`;
  const graph = new Map<string, string[]>();
  for (const [file, imports] of await repositoryImportGraph(doors)) {
    if (file.startsWith("lib/")) graph.set(underLib(file), imports.map(underLib));
  }
  return graph;
}

/** The files under `lib/<folder>/`, recursively, relative to lib/. */
async function filesUnder(folder: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string) => {
    for await (const entry of Deno.readDir(new URL(dir, LIB))) {
      if (entry.isDirectory) await walk(`${dir}${entry.name}/`);
      else if (entry.name.endsWith(".ts")) out.push(`${dir}${entry.name}`);
    }
  };
  await walk(`${folder}/`);
  return out.sort();
}

const DOORS: Record<string, string[]> = {
  canonical: ["canonical/mod.ts"],
  inbound: ["inbound/mod.ts", "inbound/openai/mod.ts", "inbound/anthropic/mod.ts"],
  providers: [
    "providers/mod.ts",
    "providers/ollama/mod.ts",
    "providers/openai/mod.ts",
    "providers/anthropic/mod.ts",
  ],
};

/** What each folder may import besides itself. */
const ALLOWED: Record<string, string[]> = {
  canonical: [],
  inbound: ["canonical/", "client_text.ts", "bytes.ts"],
  providers: ["canonical/", "config/", "bytes.ts"],
};

/** The imports of files under `folder` that leave it for a place it may not import. */
function wrongImports(graph: Map<string, string[]>, folder: string): string[] {
  const wrong: string[] = [];
  for (const [file, imports] of graph) {
    if (!file.startsWith(`${folder}/`)) continue;
    for (const target of imports) {
      const allowed = [`${folder}/`, ...ALLOWED[folder]].some((prefix) => target.startsWith(prefix));
      if (!allowed) wrong.push(`${file} → ${target}`);
    }
  }
  return wrong;
}

Deno.test("inbound and providers meet only in lib/canonical", async (t) => {
  const graph = await importGraph(Object.values(DOORS).flat().map((door) => `lib/${door}`));

  for (const folder of Object.keys(DOORS)) {
    await t.step(`lib/${folder} imports only itself and ${ALLOWED[folder].join(", ") || "nothing"}`, () => {
      assert.ok(
        [...graph.keys()].some((file) => file.startsWith(`${folder}/`)),
        `no lib/${folder} file seen`,
      );
      assert.deepEqual(wrongImports(graph, folder), []);
    });

    await t.step(`every file under lib/${folder} is reachable from its doors`, async () => {
      const unreachable = (await filesUnder(folder)).filter((file) => !graph.has(file));
      assert.deepEqual(unreachable, []);
    });
  }

  await t.step("an inbound file importing a provider, or the reverse, is caught", () => {
    const crossed = new Map([
      ["inbound/openai/stream.ts", ["canonical/mod.ts", "providers/sse.ts"]],
      ["providers/anthropic/request.ts", ["inbound/anthropic/schema.ts"]],
    ]);
    assert.deepEqual(wrongImports(crossed, "inbound"), ["inbound/openai/stream.ts → providers/sse.ts"]);
    assert.deepEqual(wrongImports(crossed, "providers"), [
      "providers/anthropic/request.ts → inbound/anthropic/schema.ts",
    ]);
  });
});
