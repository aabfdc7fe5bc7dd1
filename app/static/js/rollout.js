// A model's rollout as GET /api/models/{name}/rollout answers it: version labels, the canary
// split, and how the shadow candidate's answers differ from the default version's.

import { el } from "./dom.js";
import { fmt, percent } from "./format.js";

function labelsLine(labels) {
  const names = Object.keys(labels).sort();
  if (!names.length) return null;
  return el(
    "p",
    { class: "rollout-labels" },
    el("strong", { text: "Labels: " }),
    names.flatMap((name, i) => [i ? ", " : "", el("code", { text: name }), ` → v${labels[name]}`]),
    ".",
  );
}

function splitLine(weights) {
  const versions = Object.keys(weights).sort((a, b) => a - b);
  const total = versions.reduce((sum, v) => sum + weights[v], 0);
  if (!total) return null;
  const parts = versions.map((v) => `v${v} ${percent(weights[v] / total)}`);
  return el(
    "p",
    { class: "rollout-split" },
    el("strong", { text: "Canary split: " }),
    `${parts.join(", ")} of the requests that name no version (sticky per X-Caller-ID).`,
  );
}

function shadowTable(shadow) {
  const rows = [
    ["Compared rows", shadow.compared_rows.toLocaleString("en-US")],
    [
      "Top class changed",
      shadow.class_changes === null
        ? "n/a (regressor)"
        : `${shadow.class_changes} (${shadow.class_change_rate === null ? "–" : percent(shadow.class_change_rate)})`,
    ],
    [
      "Mean absolute difference",
      shadow.mean_abs_difference === null ? "–" : fmt(shadow.mean_abs_difference, 4),
    ],
    [
      "Largest row difference",
      shadow.max_abs_difference === null ? "–" : fmt(shadow.max_abs_difference, 4),
    ],
    [
      "Errors, timeouts, dropped, paused",
      `${shadow.errors}, ${shadow.timeouts}, ${shadow.dropped}, ${shadow.paused}`,
    ],
  ];
  return el(
    "table",
    { class: "plain rollout-shadow" },
    el(
      "caption",
      {
        text: `Shadow: v${shadow.version} answers ${percent(shadow.fraction)} of v${shadow.compared_with}'s requests in the background`,
      },
    ),
    el(
      "tbody",
      {},
      rows.map(([name, value]) =>
        el("tr", {}, el("th", { scope: "row", text: name }), el("td", { class: "num", text: value })),
      ),
    ),
  );
}

// Nothing when the model has no labels, split or shadow: most models never roll out.
export function rolloutView(status) {
  const parts = [
    labelsLine(status.labels),
    splitLine(status.weights),
    status.shadow ? shadowTable(status.shadow) : null,
    status.refused
      ? el("p", { class: "error", role: "status", text: `Rollout file not applied: ${status.refused}` })
      : null,
  ].filter(Boolean);
  if (!parts.length) return null;
  return el(
    "div",
    { class: "rollout", "aria-label": `Rollout of ${status.model}` },
    el("h3", { text: "Rollout" }),
    parts,
  );
}
