// The model card: what the model does, how well, its inputs, baselines and layers.

import { el } from "./dom.js";
import { fmt, shapeText } from "./format.js";

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
    layersTable(card),
  );
}
