/**
 * EDR writer throughput. Each `commit` bench iteration commits `n` records concurrently and awaits them
 * all, so records/s = n / (time per iteration). Run: `deno bench --allow-all bench/edr_writer_bench.ts`.
 * The writer's fast paths, each beside its plain twin (the baseline of its group), run alone with
 * `deno bench --allow-all --filter "fast path" bench/edr_writer_bench.ts`; docs/performance.md keeps
 * the figures.
 */

import canonicalize from "canonicalize";
import {
  canonicalJson,
  EdrWriter,
  hashCanonical,
  sealDraft,
  sealDraftPlain,
  sha256Hex,
  validateEdr,
} from "../lib/edr/mod.ts";
import type { EdrDraft } from "../lib/edr/mod.ts";
import { sampleDraft, sampleInput } from "../tests/edr/sample_draft.ts";

const root = Deno.makeTempDirSync({ prefix: "edr_bench_" });
globalThis.addEventListener("unload", () => {
  // Writers are left open, so their materializer workers may still be creating files while the folder
  // is removed; removing again once they are done ends it (unload cannot wait for close()).
  for (let attempt = 1;; attempt++) {
    try {
      Deno.removeSync(root, { recursive: true });
      return;
    } catch (error) {
      if (attempt >= 1000) throw error;
    }
  }
});

const writers = new Map<string, EdrWriter>();
async function writer(name: string, validate: boolean): Promise<EdrWriter> {
  let w = writers.get(name);
  if (!w) writers.set(name, w = await EdrWriter.open(`${root}/${name}`, { validate, log: () => {} }));
  return w;
}

let ids = 0;
function draft(): EdrDraft {
  return sampleDraft({ request_id: "req_" + (++ids).toString(16).padStart(32, "0") });
}

const record = {
  ...draft(),
  sequence: 1,
  prev_edr_hash: null,
  decision_core_hash: "a".repeat(64),
  edr_hash: "b".repeat(64),
};

Deno.bench("canonicalJson + sha256 of a realistic record", { group: "hash" }, () => {
  sha256Hex(canonicalJson(record));
});

// The router builds its records with members already in canonical order, which takes JSON.stringify.
const orderedRecord = JSON.parse(canonicalize(record)!);

Deno.bench(
  "fast path: canonicalJson of a record already in canonical order (native JSON.stringify)",
  { group: "canonical" },
  () => {
    canonicalJson(orderedRecord);
  },
);

Deno.bench("fast path twin: the canonicalize library on the same record", {
  group: "canonical",
  baseline: true,
}, () => {
  canonicalize(orderedRecord);
});

// Members in RFC 8785 order at every depth, as recordDraft builds them, so the seal takes its native path.
const sealInput: EdrDraft = JSON.parse(canonicalize(draft())!);

Deno.bench("fast path: sealDraft (two halves around edr_hash, native path)", { group: "seal" }, () => {
  sealDraft(sealInput, 7, "a".repeat(64));
});

Deno.bench(
  "fast path twin: sealDraftPlain (the library on the core and the whole record)",
  { group: "seal", baseline: true },
  () => {
    sealDraftPlain(sealInput, 7, "a".repeat(64));
  },
);

// Zeros written ahead of the WAL's end against plain appends: one record per fdatasync (what one
// connection sees) and 64 per batch. Validation is off so the sync dominates.
for (const concurrency of [1, 64]) {
  for (const zeroAhead of [true, false]) {
    const name = `zero-ahead-${zeroAhead}-c${concurrency}`;
    Deno.bench(
      `fast path${zeroAhead ? "" : " twin"}: commit ${concurrency} record(s) ${
        zeroAhead ? "over zeros written ahead" : "as plain appends"
      }`,
      { group: `zero-ahead x${concurrency}`, baseline: !zeroAhead },
      async () => {
        let w = writers.get(name);
        if (!w) {
          w = await EdrWriter.open(`${root}/${name}`, { validate: false, zeroAhead, log: () => {} });
          writers.set(name, w);
        }
        const pending: Promise<unknown>[] = [];
        for (let i = 0; i < concurrency; i++) pending.push(w.commit(draft()));
        await Promise.all(pending);
      },
    );
  }
}

Deno.bench("hashCanonical of a ChatRequest-sized input", { group: "hash" }, () => {
  hashCanonical(
    sampleInput(
      "a short prompt of about twenty words, which is typical for the router's interactive traffic",
    ),
  );
});

Deno.bench("validateEdr of a realistic record", { group: "hash" }, () => {
  validateEdr(record);
});

for (const concurrency of [1, 64]) {
  for (const validate of [true, false]) {
    const name = `c${concurrency}-${validate ? "validated" : "unvalidated"}`;
    Deno.bench(
      `commit ${concurrency} concurrent record(s), ${validate ? "with" : "without"} schema validation`,
      { group: `commit x${concurrency}` },
      async () => {
        const w = await writer(name, validate);
        const pending: Promise<unknown>[] = [];
        for (let i = 0; i < concurrency; i++) pending.push(w.commit(draft()));
        await Promise.all(pending);
      },
    );
  }
}

Deno.bench(
  "commit 64 concurrent records with captured inputs, validated",
  { group: "commit x64" },
  async () => {
    const w = await writer("c64-inputs", true);
    const pending: Promise<unknown>[] = [];
    for (let i = 0; i < 64; i++) {
      pending.push(
        w.commit(draft(), { capturedInput: sampleInput(`prompt ${i % 8}`) }),
      );
    }
    await Promise.all(pending);
  },
);

let sustainedRun = 0;
for (const validate of [true, false]) {
  Deno.bench(
    `sustained: 4096 records, 64 in flight, until close() (files included), ${
      validate ? "with" : "without"
    } validation`,
    { group: "sustained", n: 5, warmup: 1 },
    async () => {
      const w = await EdrWriter.open(`${root}/sustained-${++sustainedRun}`, { validate, log: () => {} });
      let next = 0;
      await Promise.all(Array.from({ length: 64 }, async () => {
        while (next++ < 4096) await w.commit(draft());
      }));
      await w.close();
    },
  );
}
