// The model card: what the model does, how well, its inputs, baselines, calibration and layers.

import { el } from "./dom.js";
import { fmt, shapeText } from "./format.js";
import { eceLine, reliabilityDiagram } from "./reliability.js";

function metricLine(card) {
  const target = card.target;
  const value = card.metrics[target.metric];
  const met =
    value !== undefined && (target.op === ">=" ? value >= target.value : value <= target.value);
  const scale = card.output.unit_scale;
  const inDollars =
    target.metric === "rmse" && scale
      ? ` (≈ $${Math.round(value * scale).toLocaleString("en-US")})`
      : "";
  return el(
    "p",
    { class: "metric" },
    el("strong", {
      text: `Test ${target.metric}: ${value === undefined ? "n/a" : fmt(value, 4)}${inDollars}`,
    }),
    ` · target ${target.op === ">=" ? "≥" : "≤"} ${target.value} on the ${target.split} · `,
    el("span", {
      class: met ? "badge ok" : "badge bad",
      text: met ? "target met" : "target missed",
    }),
  );
}

function baselinesTable(card) {
  const entries = Object.entries(card.baselines || {});
  if (!entries.length) return null;
  const metric = card.target.metric;
  return el(
    "table",
    { class: "plain" },
    el("caption", { text: "The same test split, other models" }),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("th", { scope: "col", text: "model" }),
        el("th", { scope: "col", text: metric }),
      ),
    ),
    el(
      "tbody",
      {},
      el(
        "tr",
        { class: "this" },
        el("td", { text: `this model (${card.name} v${card.version})` }),
        el("td", { class: "num", text: fmt(card.metrics[metric], 4) }),
      ),
      entries.map(([name, scores]) =>
        el(
          "tr",
          {},
          el("td", { text: name }),
          el("td", {
            class: "num",
            text: scores[metric] === undefined ? "n/a" : fmt(scores[metric], 4),
          }),
        ),
      ),
    ),
  );
}

// A classifier's reliability table: per confidence bin, how many test answers fell in it and
// how often they were right, before and after the temperature built into the model.
function calibrationView(card) {
  const cal = card.calibration;
  if (!cal) return null;
  const cell = (bin, key) =>
    el("td", {
      class: "num",
      text: bin.count ? (key === "count" ? bin.count : fmt(bin[key], 3)) : "–",
    });
  const rows = cal.reliability_before
    .map((before, i) => [before, cal.reliability_after[i]])
    .filter(([before, after]) => before.count || after.count);
  return el(
    "details",
    { class: "calibration" },
    el("summary", {
      text: `Calibration: temperature ${fmt(cal.temperature, 3)} · ECE ${fmt(cal.ece_before, 4)} → ${fmt(cal.ece_after, 4)}`,
    }),
    el(
      "p",
      {},
      `The served probabilities are softmax(log p / T) with T = ${fmt(cal.temperature, 3)}, ` +
        `fitted on the ${cal.fit_split} split. Expected calibration error (${cal.bins} bins) ` +
        `on the test split: ${fmt(cal.ece_before, 4)} before, ${fmt(cal.ece_after, 4)} after.`,
    ),
    eceLine(cal),
    reliabilityDiagram(cal),
    el(
      "table",
      { class: "plain reliability" },
      el("caption", { text: "Reliability on the test split: confidence against accuracy" }),
      el(
        "thead",
        {},
        el(
          "tr",
          {},
          el("th", { scope: "col", rowspan: "2", text: "confidence" }),
          el("th", { scope: "colgroup", colspan: "3", text: "before (T = 1)" }),
          el("th", { scope: "colgroup", colspan: "3", text: `after (T = ${fmt(cal.temperature, 3)})` }),
        ),
        el(
          "tr",
          {},
          ["answers", "mean confidence", "accuracy", "answers", "mean confidence", "accuracy"].map(
            (name) => el("th", { scope: "col", text: name }),
          ),
        ),
      ),
      el(
        "tbody",
        {},
        rows.map(([before, after]) =>
          el(
            "tr",
            {},
            el("td", { text: `${fmt(before.lower, 2)}–${fmt(before.upper, 2)}` }),
            cell(before, "count"),
            cell(before, "mean_confidence"),
            cell(before, "accuracy"),
            cell(after, "count"),
            cell(after, "mean_confidence"),
            cell(after, "accuracy"),
          ),
        ),
      ),
    ),
  );
}

function inputsView(card) {
  const input = card.input;
  if (input.kind === "features") {
    return el(
      "div",
      { class: "scroll", tabindex: 0 },
      el(
        "table",
        { class: "plain" },
        el("caption", { text: "Inputs" }),
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["name", "unit", "seen in training", "mean", "accepted"].map((t) =>
              el("th", { scope: "col", text: t }),
            ),
          ),
        ),
        el(
          "tbody",
          {},
          input.features.map((f) =>
            el(
              "tr",
              {},
              el(
                "td",
                {},
                el("code", { text: f.name }),
                el("br"),
                el("small", { text: f.description }),
              ),
              el("td", { text: f.unit }),
              el("td", {
                class: "num",
                text: `${fmt(f.observed_min, 2)} to ${fmt(f.observed_max, 2)}`,
              }),
              el("td", { class: "num", text: fmt(f.mean, 2) }),
              el("td", {
                class: "num",
                text: `${fmt(f.allowed_min, 2)} to ${fmt(f.allowed_max, 2)}`,
              }),
            ),
          ),
        ),
      ),
    );
  }
  const image = input.image;
  const how =
    image.preprocessing === "mnist"
      ? "made grayscale, a light background inverted, the ink cropped, fitted to 20×20 and centred in 28×28, as MNIST was made"
      : `converted to RGB and resized to ${image.height}×${image.width} (${image.interpolation}, aspect not kept)`;
  return el("p", {}, el("strong", { text: "Input: " }), `an image, ${how}.`);
}

function layersTable(card) {
  return el(
    "details",
    { class: "layers" },
    el("summary", { text: `Layers (${card.layers.length})` }),
    el(
      "div",
      { class: "scroll", tabindex: 0 },
      el(
        "table",
        { class: "plain" },
        el(
          "thead",
          {},
          el(
            "tr",
            {},
            ["#", "name", "type", "activation", "output shape", "params"].map((t) =>
              el("th", { scope: "col", text: t }),
            ),
          ),
        ),
        el(
          "tbody",
          {},
          card.layers.map((layer, i) =>
            el(
              "tr",
              {},
              el("td", { class: "num", text: i + 1 }),
              el("td", {}, el("code", { text: layer.name })),
              el("td", { text: layer.type }),
              el("td", { text: layer.activation ?? "" }),
              el("td", { text: shapeText(layer.output_shape) }),
              el("td", { class: "num", text: layer.params.toLocaleString("en-US") }),
            ),
          ),
        ),
      ),
    ),
  );
}

export function cardView(card) {
  const output = card.output;
  const outputText =
    output.kind === "probabilities"
      ? `probabilities of ${output.labels.join(", ")}`
      : `a value in ${output.unit ?? "units"}`;
  return el(
    "div",
    { class: "card-info" },
    el("p", { class: "description", text: card.description }),
    metricLine(card),
    inputsView(card),
    el("p", {}, el("strong", { text: "Output: " }), `${outputText}.`),
    card.explanation_methods?.length
      ? el(
          "p",
          { class: "explanation-methods" },
          el("strong", { text: "Explanations: " }),
          `${card.explanation_methods.map((m) => m.replaceAll("_", " ")).join(", ")}.`,
        )
      : null,
    el("details", {}, el("summary", { text: "Baselines" }), baselinesTable(card)),
    calibrationView(card),
    layersTable(card),
  );
}
