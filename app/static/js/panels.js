// What every panel shares: the result area, the answer, the layout, the trace section and the
// upload control.

import { el } from "./dom.js";
import { familiarityView } from "./familiarity.js";
import { fmt, percent } from "./format.js";
import { probabilityBars } from "./plots.js";

export function resultArea(id) {
  const error = el("p", { class: "error", role: "alert", id: `${id}-error`, hidden: true });
  const answer = el("div", { class: "answer-area", "aria-live": "polite", id: `${id}-answer` });
  const traceStatus = el("p", {
    class: "status trace-status",
    role: "status",
    "aria-live": "polite",
  });
  const trace = el("div", { class: "trace-area", id: `${id}-trace` });
  const showError = (message) => {
    error.textContent = message || "";
    error.hidden = !message;
  };
  return { error, answer, traceStatus, trace, showError };
}

// The inputs and the answer side by side, the trace below them. The answer sticks in view only
// within the row it shares with the inputs, so it never covers the trace.
export function panelOf(kind, inputs, answer, trace) {
  return el("div", { class: `panel ${kind}` }, el("div", { class: "panel-top" }, inputs, answer), trace);
}

// The answer column: its heading, the error, the answer, then what follows it (the image the
// model saw, the explanation).
export function resultColumn(result, ...after) {
  return el("div", { class: "result" }, el("h3", { text: "Answer" }), result.error, result.answer, ...after);
}

export function traceSection(card, result, title) {
  return el(
    "section",
    { class: "trace-section", "aria-label": `Layer trace of ${card.name}` },
    el("h3", { text: title }),
    result.traceStatus,
    result.trace,
  );
}

export function answerView(prediction) {
  if (prediction.probabilities) {
    const p = prediction.probabilities[prediction.label];
    return el(
      "div",
      { class: "answer-block" },
      el(
        "p",
        { class: "answer", "data-label": prediction.label },
        el("span", { class: "answer-label", text: prediction.label }),
        el("span", { class: "answer-p", text: ` ${percent(p)} sure` }),
      ),
      probabilityBars(prediction.probabilities, prediction.label),
      familiarityView(prediction),
    );
  }
  const dollars =
    prediction.dollars !== undefined && prediction.dollars !== null
      ? prediction.dollars.toLocaleString("en-US", {
          style: "currency",
          currency: "USD",
          maximumFractionDigits: 0,
        })
      : null;
  return el(
    "div",
    { class: "answer-block" },
    el(
      "p",
      { class: "answer", "data-value": prediction.value },
      el("span", { class: "answer-label", text: dollars ?? fmt(prediction.value) }),
      el("span", {
        class: "answer-p",
        text: ` (${fmt(prediction.value)} × ${prediction.unit ?? "units"})`,
      }),
    ),
    familiarityView(prediction),
  );
}

export function uploadControl(id, label, onFile) {
  const input = el("input", { type: "file", id, accept: "image/*", class: "file" });
  input.addEventListener("change", () => {
    if (input.files && input.files[0]) onFile(input.files[0]);
  });
  return { input, label: el("label", { for: id, class: "file-label", text: label }) };
}
