// One request's record: what was decided, on which inputs, what was tried, and its place in the chain.
import { api } from "./api.js";
import { badge, facts, h, ms, section, show, table } from "./dom.js";
import { statusBadge } from "./table.js";

export async function renderRecord(view, requestId) {
  const { record: r, chain } = await api(`/api/records/${encodeURIComponent(requestId)}`);
  const inputs = r.decision_inputs;
  view.append(
    h("p", {}, h("a", { href: "#/" }, "« All requests")),
    h("h1", {}, "Request ", h("span", { class: "mono", id: "record-id" }, r.request_id)),
    h(
      "div",
      { class: "summary", id: "record-summary" },
      statusBadge(r.failure === null ? "ok" : r.failure.type),
      " served by ",
      h("strong", { id: "record-provider" }, r.decision.provider ?? "nobody"),
      r.decision.model ? h("span", { class: "mono" }, ` ${r.decision.model}`) : null,
      ` · path ${r.decision.path} · ${r.endpoint}${r.stream ? " (stream)" : ""} · ${r.timestamp}`,
    ),
    section(
      "Decision",
      facts([
        [
          "Reason codes",
          h("span", { id: "record-reasons", class: "mono" }, r.decision_factors.join(", ") || "—"),
        ],
        ["Constraints applied", r.constraints_applied.join(", ") || "—"],
        ["Failure", r.failure ? failureText(r.failure) : "none"],
      ]),
    ),
    section(
      "Routing contract",
      r.effective_contract === null
        ? h("p", { class: "muted" }, "No contract: the request failed before one was formed.")
        : facts(Object.entries(r.effective_contract)),
      facts([
        ["Policy version", h("span", { id: "record-policy-version" }, r.policy_version)],
        ["Policy hash", h("span", { class: "mono" }, r.policy_hash)],
        ["Contract hash", h("span", { class: "mono" }, show(r.contract_hash))],
      ]),
    ),
    section("Candidates considered", candidates(r)),
    section(
      "Attempts",
      r.attempts.length === 0 ? h("p", { class: "muted" }, "No provider was called.") : table(
        ["Provider", "Model", "HTTP status", "Duration", "Outcome", "Error code"],
        r.attempts.map((a) => [a.provider, a.model, a.status, ms(a.duration_ms), a.outcome, a.error_code]),
        { id: "attempts" },
      ),
      facts([
        ["Decide", ms(r.timings.decide_ms)],
        ["First byte", ms(r.timings.first_byte_ms)],
        ["Total", ms(r.timings.total_ms)],
        ["Usage", r.usage ? `${r.usage.prompt_tokens} in, ${r.usage.completion_tokens} out` : "—"],
      ]),
    ),
    section(
      "Heavy slot",
      h("h3", {}, "Snapshot decide() read"),
      inputs.slot
        ? facts(Object.entries(inputs.slot))
        : h("p", { class: "muted" }, "Not read (decide() was not reached)."),
      h("h3", {}, "What the request did with it"),
      r.slot
        ? facts(Object.entries(r.slot))
        : h("p", { class: "muted" }, "The request needed no heavy slot."),
    ),
    section("Local health snapshot", health(inputs.health)),
    section(
      "Request features and keys",
      inputs.features ? facts(Object.entries(inputs.features)) : h("p", { class: "muted" }, "Not read."),
      facts([
        [
          "Cloud keys configured",
          Object.entries(inputs.keys).filter(([, v]) => v).map(([k]) => k).join(", ") || "none",
        ],
        ["Authority", inputs.authority],
        ["Side effects", r.side_effects],
      ]),
    ),
    section("Environment", facts(Object.entries(r.environment))),
    section(
      "Hashes and chain",
      facts([
        ["Day", h("a", { href: `#/day/${r.timestamp.slice(0, 10)}` }, r.timestamp.slice(0, 10))],
        ["Sequence", h("span", { id: "record-sequence" }, String(r.sequence))],
        [
          "Previous EDR hash",
          h("span", { class: "mono" }, r.prev_edr_hash ?? "none (first record of the day)"),
        ],
        ["Previous record", neighbour(chain.previous, r.prev_edr_hash)],
        ["Next record", neighbour(chain.next, null)],
        ["EDR hash", h("span", { class: "mono" }, r.edr_hash)],
        ["Decision core hash", h("span", { class: "mono" }, r.decision_core_hash)],
        ["Input hash", h("span", { class: "mono" }, show(r.input_hash))],
        ["Output hash", h("span", { class: "mono" }, show(r.output_hash))],
        ["Replay inputs", show(r.replay.required_inputs_pointer)],
      ]),
    ),
    replaySection(r),
    section(
      "Record as stored",
      h("p", { class: "muted" }, "The whole EDR. It holds no prompt or answer text, only hashes of them."),
      h("pre", { class: "raw" }, JSON.stringify(r, null, 2)),
    ),
  );
}

/** A link to a neighbour in the chain; for the previous one, whether its hash is the one this record names. */
function neighbour(entry, expectedHash) {
  if (entry === null) return "—";
  const link = h(
    "a",
    { href: `#/request/${entry.request_id}`, class: "mono" },
    `#${entry.sequence} ${entry.request_id}`,
  );
  if (expectedHash === null) return link;
  const linked = entry.edr_hash === expectedHash;
  return h(
    "span",
    { id: "chain-link" },
    link,
    " ",
    linked
      ? badge("its edr_hash is this record's prev_edr_hash", "good")
      : badge("its edr_hash is NOT this record's prev_edr_hash", "bad"),
  );
}

function failureText(failure) {
  return `${failure.code ?? "(no code)"} · ${failure.type} at ${failure.stage}: ${failure.message}`;
}

/** Every candidate decide() kept, in order, and what became of it; and the allowed providers it did not keep. */
function candidates(r) {
  const rows = r.candidates.map((c, i) => {
    const tried = r.attempts.filter((a) => a.provider === c.provider && a.model === c.model);
    const served = r.decision.provider === c.provider && r.decision.model === c.model;
    let fate;
    if (served) fate = badge("taken: it answered", "good");
    else if (tried.length > 0) {
      const last = tried[tried.length - 1];
      fate = badge(`tried: ${last.outcome}${last.error_code ? ` (${last.error_code})` : ""}`, "bad");
    } else if (r.decision.provider !== null) {
      fate = badge("not needed: an earlier candidate answered", "muted");
    } else fate = badge("not tried", "muted");
    return [String(i + 1), c.provider, c.model, c.heavy ? "yes" : "no", fate];
  });
  const allowed = r.effective_contract?.provider_allowlist ?? [];
  const kept = new Set(r.candidates.map((c) => c.provider));
  const dropped = allowed.filter((p) => !kept.has(p));
  return [
    r.candidates.length === 0
      ? h("p", { class: "muted" }, "No candidate: decide() kept none (see the reason codes).")
      : table(["#", "Provider", "Model", "Heavy", "Outcome"], rows, { id: "candidates" }),
    dropped.length
      ? h(
        "p",
        { class: "muted" },
        `Allowed by the contract but not kept by decide(): ${dropped.join(", ")}. `,
        "The reason codes and constraints above say why (the record keeps no per-provider note).",
      )
      : null,
  ];
}

function health(snapshot) {
  if (!snapshot) return h("p", { class: "muted" }, "Not read (decide() was not reached).");
  const { installed, ...rest } = snapshot;
  return [
    facts(Object.entries(rest)),
    installed.length
      ? table(
        ["Installed model", "Digest", "Parameters (B)"],
        installed.map((m) => [m.name, m.digest, m.parameter_size_b]),
      )
      : null,
  ];
}

function replaySection(r) {
  const out = h("div", { id: "replay-result" });
  const button = h("button", { type: "button", id: "replay" }, "Replay offline");
  button.addEventListener("click", async () => {
    button.disabled = true;
    out.replaceChildren(h("p", { class: "muted" }, "Replaying…"));
    try {
      const { report } = await api(`/api/records/${r.request_id}/replay`, {});
      out.replaceChildren(replayReport(report));
    } catch (error) {
      out.replaceChildren(
        h("p", { class: "error", role: "alert" }, `Replay could not run: ${error.message}`),
      );
    } finally {
      button.disabled = false;
    }
  });
  return section(
    "Replay",
    h(
      "p",
      { class: "muted" },
      "Recomputes the hashes and the decision from the stored inputs and policy; a local record is re-executed on the local Ollama. No other host is reached.",
    ),
    button,
    out,
  );
}

function replayReport(report) {
  const tone = report.status === "MATCH" ? "good" : report.status === "DIVERGED" ? "bad" : "warn";
  return h(
    "div",
    {},
    h(
      "p",
      {},
      h("span", { id: "replay-status", class: `badge ${tone}` }, report.status),
      report.reason_codes.length ? ` ${report.reason_codes.join(", ")}` : "",
    ),
    report.message ? h("p", {}, report.message) : null,
    table(
      ["Check", "Result", "Expected", "Observed"],
      report.checks.map((c) => [c.name, c.status, clip(c.expected), clip(c.observed)]),
      { id: "replay-checks" },
    ),
  );
}

function clip(text) {
  if (text === null) return null;
  return text.length > 160 ? `${text.slice(0, 159)}…` : text;
}
