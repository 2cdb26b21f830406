// Days: each day's counts, its chain status from verify, a latency histogram and the provider share.
import { api } from "./api.js";
import { badge, facts, h, s, section, table } from "./dom.js";

export async function renderDays(view) {
  const { days } = await api("/api/days");
  view.append(h("h1", {}, "Days"));
  if (days.length === 0) {
    view.append(h("p", { class: "empty" }, "No records yet."));
    return;
  }
  view.append(
    table(
      ["Day", "Records", ""],
      days.map((d) => [
        h("a", { href: `#/day/${d.day}` }, d.day),
        String(d.records),
        h("a", { href: `#/?day=${d.day}` }, "requests"),
      ]),
      { id: "days" },
    ),
  );
}

export async function renderDay(view, day) {
  const [stats, verify] = await Promise.all([
    api(`/api/days/${encodeURIComponent(day)}`),
    api(`/api/days/${encodeURIComponent(day)}/verify`).catch((error) => ({ error: error.message })),
  ]);
  view.append(
    h("p", {}, h("a", { href: "#/days" }, "« All days")),
    h("h1", {}, `Day ${day}`),
    section("Chain", chainStatus(verify)),
    section(
      "Counts",
      facts([
        ["Records", h("a", { href: `#/?day=${day}` }, String(stats.records))],
        [
          "Latency p50 / p95 / max",
          `${num(stats.latency_ms.p50)} / ${num(stats.latency_ms.p95)} / ${num(stats.latency_ms.max)} ms`,
        ],
      ]),
      counts("Status", stats.by_status, day, "status"),
      counts("Classification", stats.by_classification, day, "classification"),
      counts("Reason", stats.by_reason, day, "reason"),
    ),
    section("Latency (total, ms)", histogram(stats.latency_histogram)),
    section("Provider share", providerShare(stats.by_provider, stats.records)),
  );
}

function num(value) {
  return value === null ? "—" : value.toFixed(1);
}

function chainStatus(verify) {
  if (verify.error) return h("p", { class: "error" }, `verify could not run: ${verify.error}`);
  if (verify.intact) {
    return h(
      "p",
      { id: "chain-status" },
      badge("intact", "good"),
      ` verify found nothing wrong (${verify.records_checked} records checked).`,
    );
  }
  return [
    h(
      "p",
      { id: "chain-status" },
      badge(`${verify.findings.length + verify.findings_omitted} finding(s)`, "bad"),
    ),
    table(
      ["Kind", "Sequence", "File", "What"],
      verify.findings.map((f) => [f.kind, f.sequence, f.file, f.message]),
    ),
  ];
}

function counts(title, map, day, filter) {
  const entries = Object.entries(map).sort((a, b) => b[1] - a[1]);
  return h(
    "div",
    { class: "counts" },
    h("h3", {}, title),
    h(
      "ul",
      {},
      entries.map(([key, n]) =>
        h("li", {}, h("a", { href: `#/?day=${day}&${filter}=${encodeURIComponent(key)}` }, key), ` ${n}`)
      ),
    ),
  );
}

const W = 560;
const H = 180;
// Room above the tallest bar for its count.
const TOP = 14;

function histogram(buckets) {
  const max = Math.max(1, ...buckets.map((b) => b.count));
  const barW = W / buckets.length;
  const svg = s("svg", {
    viewBox: `0 ${-TOP} ${W} ${H + 34 + TOP}`,
    class: "chart",
    role: "img",
    "aria-label": "latency histogram",
    id: "latency-chart",
  });
  buckets.forEach((b, i) => {
    const height = Math.round((b.count / max) * H);
    const x = i * barW + 4;
    svg.append(
      s(
        "rect",
        { x, y: H - height, width: barW - 8, height, class: "bar" },
        s("title", {}, `${label(buckets, i)}: ${b.count}`),
      ),
      s(
        "text",
        { x: x + (barW - 8) / 2, y: H + 14, "text-anchor": "middle", class: "axis" },
        label(buckets, i),
      ),
    );
    if (b.count > 0) {
      svg.append(
        s(
          "text",
          { x: x + (barW - 8) / 2, y: H - height - 4, "text-anchor": "middle", class: "value" },
          String(b.count),
        ),
      );
    }
  });
  svg.append(
    s(
      "text",
      { x: W / 2, y: H + 30, "text-anchor": "middle", class: "axis" },
      "upper bound of the bucket (ms)",
    ),
  );
  return svg;
}

function label(buckets, i) {
  const b = buckets[i];
  return b.le_ms === null ? `>${buckets[i - 1].le_ms}` : `≤${b.le_ms}`;
}

const PROVIDER_CLASS = { local: "p-local", anthropic: "p-anthropic", openai: "p-openai", none: "p-none" };

function providerShare(byProvider, total) {
  const entries = Object.entries(byProvider).sort((a, b) => b[1] - a[1]);
  const svg = s("svg", {
    viewBox: `0 0 ${W} 28`,
    class: "chart",
    role: "img",
    "aria-label": "provider share",
    id: "provider-chart",
  });
  let x = 0;
  for (const [provider, n] of entries) {
    const width = total ? (n / total) * W : 0;
    svg.append(
      s(
        "rect",
        { x, y: 0, width, height: 28, class: PROVIDER_CLASS[provider] ?? "p-none" },
        s("title", {}, `${provider}: ${n}`),
      ),
    );
    x += width;
  }
  const legend = h(
    "ul",
    { class: "legend" },
    entries.map(([provider, n]) =>
      h(
        "li",
        {},
        h("span", { class: `swatch ${PROVIDER_CLASS[provider] ?? "p-none"}` }),
        `${provider}: ${n} (${total ? Math.round((n / total) * 100) : 0}%)`,
      )
    ),
  );
  return [svg, legend];
}
