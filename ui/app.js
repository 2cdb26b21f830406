// The explorer's entry: a hash router over three views, and the client-key prompt.
import { forgetKey, KeyNeeded, storedKey, storeKey } from "./api.js";
import { h } from "./dom.js";
import { renderDay, renderDays } from "./day.js";
import { renderRecord } from "./record.js";
import { renderTable } from "./table.js";

const main = document.getElementById("main");
const forget = document.getElementById("forget-key");

/** The current hash as a path and its query: `#/request/req_…?x=1` → ["/request/req_…", URLSearchParams]. */
function route() {
  const hash = location.hash.replace(/^#/, "") || "/";
  const [path, query] = hash.split("?");
  return { path, params: new URLSearchParams(query ?? "") };
}

let renderCount = 0;

async function render() {
  const mine = ++renderCount;
  const { path, params } = route();
  forget.hidden = !storedKey();
  // The route the view shows, so a reader (or a test) can tell a finished view from the one it replaces.
  const view = h("div", { class: "view", "data-route": location.hash || "#/" });
  main.replaceChildren(h("p", { class: "muted" }, "Loading…"));
  try {
    if (path.startsWith("/request/")) await renderRecord(view, decodeURIComponent(path.slice(9)));
    else if (path === "/days") await renderDays(view);
    else if (path.startsWith("/day/")) await renderDay(view, decodeURIComponent(path.slice(5)));
    else await renderTable(view, params);
  } catch (error) {
    if (mine !== renderCount) return;
    if (error instanceof KeyNeeded) {
      main.replaceChildren(keyForm(error.message));
      return;
    }
    view.replaceChildren(h("p", { class: "error", role: "alert" }, `Could not load: ${error.message}`));
  }
  // A slower earlier render must not replace a later one.
  if (mine === renderCount) main.replaceChildren(view);
}

function keyForm(reason) {
  const input = h("input", {
    type: "password",
    id: "client-key",
    name: "client-key",
    autocomplete: "off",
    required: true,
  });
  const form = h(
    "form",
    { class: "card key-form" },
    h("h2", {}, "Client key needed"),
    h(
      "p",
      {},
      "This router requires a client key for its API. Enter one of the policy's client keys; it is kept in this tab's session storage only.",
    ),
    storedKey() ? h("p", { class: "error" }, `The key was refused: ${reason}`) : null,
    h("label", { for: "client-key" }, "Client key"),
    input,
    h("button", { type: "submit" }, "Use key"),
  );
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    storeKey(input.value.trim());
    render();
  });
  return form;
}

forget.addEventListener("click", () => {
  forgetKey();
  render();
});
addEventListener("hashchange", render);
render();
