/**
 * The repository's import graph as Deno itself resolves it (`deno info --json`), shared by the tests that
 * check which module may import which. One `deno info` run over a scratch module importing every entry
 * reads the whole graph at once.
 */
import assert from "node:assert/strict";
import { join, relative } from "node:path";
import { fileURLToPath as fromFileUrl } from "node:url";

/** The repository root, as a file path ending in a separator. */
export const REPO = fromFileUrl(new URL("../../", import.meta.url));

interface InfoModule {
  specifier: string;
  dependencies?: Array<Record<string, { specifier?: string }>>;
}

/**
 * Every repository module reachable from `entries` (repository paths), with the repository modules each
 * imports (type-only imports too), all as repository paths.
 */
export async function importGraph(entries: string[]): Promise<Map<string, string[]>> {
  const dir = await Deno.makeTempDir({ prefix: "hi-imports-" });
  try {
    const entry = join(dir, "all.ts");
    const lines = entries.map((f) => `import ${JSON.stringify(new URL(f, `file://${REPO}`).href)};`);
    await Deno.writeTextFile(entry, lines.join("\n"));
    const { code, stdout, stderr } = await new Deno.Command(Deno.execPath(), {
      args: ["info", "--json", "--config", join(REPO, "deno.json"), entry],
      cwd: REPO,
    }).output();
    assert.equal(code, 0, new TextDecoder().decode(stderr));
    const info = JSON.parse(new TextDecoder().decode(stdout)) as { modules: InfoModule[] };
    const local = (specifier: string | undefined) =>
      specifier?.startsWith(`file://${REPO}`) ? relative(REPO, fromFileUrl(specifier)) : null;
    const graph = new Map<string, string[]>();
    for (const module of info.modules) {
      const from = local(module.specifier);
      if (from === null) continue;
      const imports = new Set<string>();
      for (const dependency of module.dependencies ?? []) {
        for (const kind of ["code", "type"]) {
          const to = local(dependency[kind]?.specifier);
          if (to !== null && to !== from) imports.add(to);
        }
      }
      graph.set(from, [...imports]);
    }
    return graph;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
