/**
 * Keeps the shape docs/architecture.md draws: imports run one way, from the entry points down to the core.
 * The graph is Deno's own (`deno info --json` of every module under lib/, cli/ and main.ts), so a dynamic
 * import or a worker's module counts like any other.
 */
import assert from "node:assert/strict";
import { join } from "node:path";
import { importGraph, REPO } from "./import_graph.ts";

/**
 * Each group's layer, lowest first. A module may import its own group and any lower layer; two groups of
 * one layer never import each other (inbound and providers meet only in lib/canonical).
 */
export const LAYERS: string[][] = [
  ["lib/config", "lib/canonical", "lib/bytes.ts", "lib/version.ts", "lib/client_text.ts", "schemas"],
  ["lib/authority", "lib/health", "lib/slot"],
  ["lib/contract"],
  ["lib/inbound", "lib/providers", "lib/edr"],
  ["lib/replay", "lib/pipeline"],
  ["lib/fleet"],
  ["lib/explorer"],
  ["lib/http"],
  ["main.ts", "cli"],
];

/** The group of a repository path: `lib/<folder>`, a file directly under lib/, or the top folder. */
export function groupOf(path: string): string {
  const parts = path.split("/");
  if (parts[0] === "lib") return parts.length > 2 ? `lib/${parts[1]}` : path;
  return parts.length > 1 ? parts[0] : path;
}

/**
 * The one import from outside lib/, cli/ and main.ts: the demo runs the fakes the tests use as its sample
 * upstreams, so what `deno task demo` shows is what the suite checks. Nothing under lib/ may do this.
 */
const ALLOWED_OUTSIDE: ReadonlyArray<[string, string]> = [["cli/demo.ts", "tests/fakes/"]];

const rank = new Map(LAYERS.flatMap((groups, layer) => groups.map((g) => [g, layer] as const)));

/** Why `from` may not import `to` (repository paths), or null when the import runs the right way. */
export function importProblem(from: string, to: string): string | null {
  const a = groupOf(from);
  const b = groupOf(to);
  if (a === b) return null;
  if (a.startsWith("lib") && (b === "tests" || b === "cli" || b === "bench")) {
    return `${from} imports ${to}: lib never imports ${b}/`;
  }
  if (ALLOWED_OUTSIDE.some(([f, prefix]) => from === f && to.startsWith(prefix))) return null;
  // What an allowed outside module imports in turn is the test suite's business, not this graph's.
  if (a === "tests") return null;
  const ra = rank.get(a);
  const rb = rank.get(b);
  if (ra === undefined) {
    return `${from} is in ${a}, which has no layer in LAYERS (add it, and to architecture.md)`;
  }
  if (rb === undefined) {
    return `${to} is in ${b}, which has no layer in LAYERS (add it, and to architecture.md)`;
  }
  if (rb > ra) return `${from} (${a}) imports ${to} (${b}), a higher layer: imports run toward the core`;
  if (rb === ra) {
    return `${from} (${a}) imports ${to} (${b}) of its own layer: groups of one layer stay apart`;
  }
  return null;
}

async function sourceFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const entry of Deno.readDir(join(REPO, dir))) {
    const path = `${dir}/${entry.name}`;
    if (entry.isDirectory) out.push(...await sourceFiles(path));
    else if (entry.name.endsWith(".ts")) out.push(path);
  }
  return out;
}

/** Every import edge between repository files reachable from lib/, cli/ and main.ts. */
async function importEdges(): Promise<Array<[string, string]>> {
  const files = ["main.ts", ...await sourceFiles("lib"), ...await sourceFiles("cli")];
  const graph = await importGraph(files);
  return [...graph].flatMap(([from, imports]) => imports.map((to): [string, string] => [from, to]));
}

Deno.test("import direction: the rule itself refuses upward, sideways and test imports", () => {
  assert.equal(importProblem("lib/http/server.ts", "lib/edr/mod.ts"), null);
  assert.equal(importProblem("lib/edr/writer.ts", "lib/edr/seal.ts"), null);
  assert.match(importProblem("lib/contract/decide.ts", "lib/http/errors.ts")!, /higher layer/);
  assert.match(importProblem("lib/providers/mod.ts", "lib/inbound/openai/mod.ts")!, /own layer/);
  assert.match(importProblem("lib/edr/writer.ts", "tests/fakes/fake_ollama.ts")!, /never imports tests/);
  assert.match(importProblem("lib/http/server.ts", "cli/serve.ts")!, /never imports cli/);
  assert.match(importProblem("lib/newthing/a.ts", "lib/edr/mod.ts")!, /no layer/);
  assert.equal(importProblem("cli/demo.ts", "tests/fakes/fake_ollama.ts"), null);
  assert.match(importProblem("cli/serve.ts", "tests/fakes/fake_ollama.ts")!, /no layer/);
});

Deno.test("import direction: every import under lib/, cli/ and main.ts runs toward the core", async () => {
  const edges = await importEdges();
  assert.ok(edges.length > 100, `only ${edges.length} import edges found: the graph was not read`);
  const problems = [...new Set(edges.map(([from, to]) => importProblem(from, to)).filter((p) => p !== null))];
  assert.deepEqual(problems, []);
});
