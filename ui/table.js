// The request table: newest first, paginated, with filters and a request-id search.
import { api } from "./api.js";
import { badge, h, ms } from "./dom.js";

const FILTERS = [
  ["day", "Day", "days"],
  ["provider", "Provider", "providers"],
  ["status", "Status", "statuses"],
  ["reason", "Reason code", "reasons"],
  ["classification", "Classification", "classifications"],
];

/** Builds `#/?…` from parameters, leaving out empty ones. */
export function tableHash(params) {
  const query = new URLSearchParams();
  for (const [name, value] of params) if (value) query.set(name, value);
  const text = query.toString();
  return text ? `#/?${text}` : "#/";
}

export function statusBadge(status) {
  return badge(status, status === "ok" ? "good" : "bad");
}

export async function renderTable(view, params) {
  const query = new URLSearchParams();
  for (const name of ["day", "provider", "status", "reason", "classification", "request_id", "cursor"]) {
    const value = params.get(name);
    if (value) query.set(name, value);
  }
  const [facets, page] = await Promise.all([
    api(`/api/facets${params.get("day") ? `?day=${encodeURIComponent(params.get("day"))}` : ""}`),
    api(`/api/records?${query}`),
  ]);
  view.append(filterForm(facets, params));
  const summary = h(
    "p",
    { class: "muted", id: "match-count" },
    `${page.total} record${page.total === 1 ? "" : "s"} match`,
  );
  view.append(summary);
  if (page.records.length === 0) {
    view.append(
      h(
        "p",
        { class: "empty" },
        "No records match. Send a request through the router, or clear the filters.",
      ),
    );
    return;
  }
  const rows = page.records.map((r) =>
    h(
      "tr",
      { "data-request-id": r.request_id },
      h("td", { class: "nowrap", title: r.timestamp }, r.timestamp.slice(5, 19).replace("T", " ")),
      h("td", {}, h("a", { href: `#/request/${r.request_id}`, class: "mono" }, r.request_id)),
      h("td", { class: "nowrap" }, r.endpoint === "/v1/messages" ? "messages" : "chat"),
      h("td", {}, r.classification),
      h(
        "td",
        { class: "provider nowrap" },
        r.provider,
        r.model ? h("span", { class: "muted" }, ` ${r.model}`) : null,
      ),
      h("td", {}, r.path),
      h("td", { class: "status" }, statusBadge(r.status)),
      h("td", { class: "mono reason" }, r.reason ?? "—"),
      h("td", { class: "num" }, String(r.fallbacks)),
      h("td", { class: "num" }, ms(r.total_ms)),
    )
  );
  const scroll = h("div", { class: "scroll" });
  view.append(scroll);
  scroll.append(
    h(
      "table",
      { class: "data", id: "requests" },
      h(
        "thead",
        {},
        h(
          "tr",
          {},
          [
            "Time (UTC)",
            "Request id",
            "API",
            "Class",
            "Provider",
            "Path",
            "Status",
            "Reason",
            "Fallbacks",
            "Total",
          ]
            .map((c) => h("th", { scope: "col" }, c)),
        ),
      ),
      h("tbody", {}, rows),
    ),
  );
  const nav = h("nav", { class: "pager" });
  if (params.get("cursor")) {
    const first = new URLSearchParams(params);
    first.delete("cursor");
    nav.append(h("a", { href: tableHash(first) }, "« Newest"));
  }
  if (page.next_cursor) {
    const next = new URLSearchParams(params);
    next.set("cursor", page.next_cursor);
    nav.append(h("a", { href: tableHash(next), id: "older" }, "Older »"));
  }
  view.append(nav);
}

function filterForm(facets, params) {
  const form = h("form", { class: "filters", role: "search" });
  for (const [name, label, facet] of FILTERS) {
    const current = params.get(name) ?? "";
    const values = facets[facet].includes(current) || current === ""
      ? facets[facet]
      : [current, ...facets[facet]];
    const select = h(
      "select",
      { name, id: `filter-${name}` },
      h("option", { value: "" }, "any"),
      values.map((v) => h("option", { value: v, selected: v === current }, v)),
    );
    select.addEventListener("change", () => apply(form));
    form.append(h("label", {}, h("span", {}, label), select));
  }
  const search = h("input", {
    type: "search",
    name: "request_id",
    id: "search-request-id",
    placeholder: "req_…",
    value: params.get("request_id") ?? "",
    spellcheck: "false",
  });
  form.append(h("label", {}, h("span", {}, "Request id"), search));
  form.append(h("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    apply(form);
  });
  return form;
}

function apply(form) {
  const params = new URLSearchParams();
  for (const [name, value] of new FormData(form)) if (value) params.set(name, String(value).trim());
  location.hash = tableHash(params);
}
