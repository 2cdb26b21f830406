/**
 * The seam between what clients speak and what upstreams speak, read from `deno info --json`: the
 * canonical chat module imports nothing; inbound dialects (lib/inbound) and provider adapters
 * (lib/providers) each import lib/canonical and never each other; and every file in those folders is
 * reachable from its doors (`mod.ts`), so none lies there unused.
 */
import assert from "node:assert/strict";

const ROOT = new URL("../../", import.meta.url);
const LIB = new URL("lib/", ROOT).href;

interface InfoModule {
  specifier: string;
  dependencies?: { code?: { specifier: string }; type?: { specifier: string } }[];
}

/** Every local module reachable from `doors`, with the local modules each imports (type-only imports too). */
async function importGraph(doors: string[]): Promise<Map<string, string[]>> {
  const graph = new Map<string, string[]>();
  for (const door of doors) {
    const output = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", door],
      cwd: new URL(".", ROOT).pathname,
      stdout: "piped",
      stderr: "piped",
    }).output();
    assert.ok(output.success, new TextDecoder().decode(output.stderr));
    const info = JSON.parse(new TextDecoder().decode(output.stdout)) as { modules: InfoModule[] };
    for (const module of info.modules) {
      if (!module.specifier.startsWith(LIB)) continue;
      const imports = (module.dependencies ?? [])
        .flatMap((dep) => [dep.code?.specifier, dep.type?.specifier])
        .filter((spec): spec is string => spec !== undefined && spec.startsWith("file:"));
      graph.set(module.specifier.slice(LIB.length), [
        ...new Set(imports.map((spec) => spec.slice(LIB.length))),
      ]);
    }
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
