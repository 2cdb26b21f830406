// Building the page from data without ever parsing data as HTML: every value goes in as text.

/** An element with attributes (never event handlers) and children (strings become text nodes). */
export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

const SVG_NS = "http://www.w3.org/2000/svg";

/** An SVG element, the same way. */
export function s(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  setAttrs(el, attrs);
  append(el, children);
  return el;
}

function setAttrs(el, attrs) {
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on")) throw new Error(`no inline handlers (${name})`);
    el.setAttribute(name, value === true ? "" : String(value));
  }
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** A value as the page shows it: null as an em dash, objects as compact JSON. */
export function show(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  return String(value);
}

/** A two-column table of label/value pairs. */
export function facts(pairs) {
  return h(
    "table",
    { class: "facts" },
    h(
      "tbody",
      {},
      pairs.map(([label, value]) =>
        h(
          "tr",
          {},
          h("th", { scope: "row" }, label),
          h("td", {}, value instanceof Node ? value : show(value)),
        )
      ),
    ),
  );
}

/** A data table from column titles and rows of cells. */
export function table(columns, rows, attrs = {}) {
  return h(
    "table",
    { class: "data", ...attrs },
    h("thead", {}, h("tr", {}, columns.map((c) => h("th", { scope: "col" }, c)))),
    h(
      "tbody",
      {},
      rows.map((cells) => h("tr", {}, cells.map((c) => h("td", {}, c instanceof Node ? c : show(c))))),
    ),
  );
}

/** A badge whose class tells its tone. */
export function badge(text, tone) {
  return h("span", { class: `badge ${tone}` }, text);
}

/** A section with a heading. */
export function section(title, ...children) {
  return h("section", { class: "card" }, h("h2", {}, title), ...children);
}

/** Milliseconds as shown in tables. */
export function ms(value) {
  return value === null || value === undefined ? "—" : `${Number(value).toFixed(value < 10 ? 2 : 0)} ms`;
}
