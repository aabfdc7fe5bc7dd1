// Tabular models: sliders with units; the answer follows them (debounced)

import { el, debounce } from "./dom.js";
import { fmt } from "./format.js";
import { API, postJson, explain, requestSlot } from "./api.js";
import { renderTrace } from "./trace.js";
import { renderWalkthrough } from "./walkthrough.js";
import { resultArea, resultColumn, panelOf, traceSection, answerView } from "./panels.js";
import { explanationArea, explanationSection, tabularExplainer } from "./explanations.js";

const DEBOUNCE_MS = 250;
// A tabular model whose Dense layers hold at most this many weights gets them in its trace,
// for the "x @ kernel + bias" walk-through (iris: 67; housing's 256-wide layers: far more).
const WALKTHROUGH_MAX_WEIGHTS = 1000;

function niceStep(range) {
  if (!(range > 0)) return 0.01;
  const raw = range / 100;
  const power = 10 ** Math.floor(Math.log10(raw));
  return power;
}

function decimalsOf(step) {
  return Math.max(0, -Math.floor(Math.log10(step)));
}

export function tabularPanel(card) {
  const id = `m-${card.name}`;
  const result = resultArea(id);
  const weightCount = card.layers
    .filter((l) => l.type === "Dense")
    .reduce((acc, l) => acc + l.params, 0);
  const walkthrough = weightCount <= WALKTHROUGH_MAX_WEIGHTS;
  const values = {};
  const inputs = [];
  const form = el("form", {
    class: "features",
    "aria-label": `${card.name} inputs`,
    onsubmit: (e) => e.preventDefault(),
  });

  for (const f of card.input.features) {
    const step = niceStep(f.observed_max - f.observed_min);
    const digits = decimalsOf(step);
    const start = Number(f.mean.toFixed(digits));
    values[f.name] = start;
    const sliderId = `${id}-${f.name}`;
    const hintId = `${sliderId}-hint`;
    const slider = el("input", {
      type: "range",
      id: sliderId,
      name: f.name,
      min: f.observed_min,
      max: f.observed_max,
      step,
      value: start,
      "aria-describedby": hintId,
    });
    const number = el("input", {
      type: "number",
      class: "number",
      name: `${f.name}-number`,
      min: f.allowed_min,
      max: f.allowed_max,
      step,
      value: start,
      "aria-label": `${f.description} (${f.unit}), exact value`,
      "aria-describedby": hintId,
    });
    const warn = el("span", { class: "warn", hidden: true, text: "outside the training range" });
    const set = (value, from) => {
      values[f.name] = value;
      if (from !== slider) slider.value = String(value);
      if (from !== number) number.value = String(value);
      warn.hidden = value >= f.observed_min && value <= f.observed_max;
      update();
    };
    slider.addEventListener("input", () => set(Number(slider.value), slider));
    number.addEventListener("input", () => {
      if (number.value !== "" && Number.isFinite(Number(number.value)))
        set(Number(number.value), number);
    });
    inputs.push({ f, start, set });
    form.append(
      el(
        "div",
        { class: "field" },
        el(
          "label",
          { for: sliderId },
          f.description,
          " ",
          el("span", { class: "unit", text: `(${f.unit})` }),
        ),
        el(
          "div",
          { class: "field-controls" },
          slider,
          number,
          el("span", { class: "unit", "aria-hidden": "true", text: f.unit }),
        ),
        el(
          "small",
          { id: hintId, class: "hint" },
          `Seen in training: ${fmt(f.observed_min, 2)} to ${fmt(f.observed_max, 2)} ${f.unit}. `,
          warn,
        ),
      ),
    );
  }
  form.append(
    el("button", {
      type: "button",
      class: "secondary",
      text: "Reset to the training averages",
      onclick: () => inputs.forEach(({ start, set }) => set(start)),
    }),
  );

  const predictSlot = requestSlot();
  const traceSlot = requestSlot();
  const why = explanationArea(card);
  const explainFor = tabularExplainer(card, why);
  const base = `${API}/${card.name}`;

  async function answerFor(body) {
    result.answer.setAttribute("aria-busy", "true");
    let prediction;
    try {
      prediction = await postJson(`${base}/predict`, body, predictSlot());
    } catch (error) {
      const message = explain(error);
      if (!message) return; // newer inputs took this request's place
      result.showError(message);
      result.answer.removeAttribute("aria-busy");
      result.answer.replaceChildren();
      return;
    }
    result.answer.replaceChildren(answerView(prediction));
    result.answer.removeAttribute("aria-busy");
  }

  async function traceFor(body) {
    result.traceStatus.textContent = "Tracing the layers…";
    let trace;
    try {
      trace = await postJson(
        `${base}/trace${walkthrough ? "?weights=true" : ""}`,
        body,
        traceSlot(),
      );
    } catch (error) {
      const message = explain(error);
      if (!message) return;
      result.trace.replaceChildren();
      result.traceStatus.textContent =
        error.status === 422 ? "No trace for an input the model refuses." : `No trace: ${message}`;
      return;
    }
    if (walkthrough) renderWalkthrough(result.trace, trace, card, body);
    else renderTrace(result.trace, trace, card);
    result.traceStatus.textContent = "";
  }

  async function run() {
    const body = { ...values };
    result.showError(null);
    await Promise.all([answerFor(body), traceFor(body), explainFor(body)]);
  }
  const update = debounce(run, DEBOUNCE_MS);

  const panel = panelOf(
    "tabular",
    el("div", { class: "try" }, el("h3", { text: "Try it" }), form),
    resultColumn(result, explanationSection(card, why)),
    traceSection(
      card,
      result,
      walkthrough
        ? "Behind the scenes: every layer, with the numbers"
        : "Behind the scenes: every layer",
    ),
  );
  run();
  return panel;
}
