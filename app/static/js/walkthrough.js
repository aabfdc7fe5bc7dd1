// The tabular walk-through: input → normalize → x @ kernel + bias → ReLU → … → softmax

import { el, scrollBox } from "./dom.js";
import { fmt, flatten } from "./format.js";
import { colourScale, rgb, inkOn } from "./colours.js";

function valueCell(v, scale, tag = "td") {
  const colour = scale.colour(v);
  const cell = el(tag, { class: "num", text: fmt(v) });
  cell.style.background = rgb(colour);
  cell.style.color = inkOn(colour);
  return cell;
}

function vectorTable(caption, names, values) {
  const scale = colourScale(Math.min(0, ...values), Math.max(0, ...values));
  return el(
    "table",
    { class: "vector" },
    el("caption", { text: caption }),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        names.map((n) => el("th", { scope: "col", text: n })),
      ),
    ),
    el(
      "tbody",
      {},
      el(
        "tr",
        {},
        values.map((v) => valueCell(v, scale)),
      ),
    ),
  );
}

function unitNames(prefix, n) {
  return Array.from({ length: n }, (_, i) => `${prefix}${i}`);
}

function denseStep(layer, input, inputNames) {
  const kernel = layer.weights.kernel;
  const bias = layer.weights.bias || kernel[0].map(() => 0);
  const out = flatten(layer.values);
  // The pre-activation z = x @ kernel + bias, which equals `values` for a linear Dense layer.
  const z = bias.map((b, j) => input.reduce((acc, x, i) => acc + x * kernel[i][j], b));
  const all = kernel.flat().concat(bias);
  const scale = colourScale(Math.min(...all), Math.max(...all));
  const outNames = unitNames("u", out.length);
  const rows = kernel.map((row, i) =>
    el(
      "tr",
      {},
      el("th", { scope: "row", text: `${inputNames[i]} = ${fmt(input[i])}` }),
      row.map((w) => valueCell(w, scale)),
    ),
  );
  const table = el(
    "table",
    { class: "matrix" },
    el("caption", { text: `kernel (${kernel.length} × ${kernel[0].length}) and bias` }),
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        el("td"),
        outNames.map((n) => el("th", { scope: "col", text: n })),
      ),
    ),
    el(
      "tbody",
      {},
      rows,
      el(
        "tr",
        { class: "bias" },
        el("th", { scope: "row", text: "+ bias" }),
        bias.map((b) => valueCell(b, scale)),
      ),
    ),
  );
  const terms = input.map((x, i) => `${fmt(x, 2)}×${fmt(kernel[i][0], 2)}`).join(" + ");
  const worked = el("p", {
    class: "worked",
    text: `u0 = ${terms} + ${fmt(bias[0], 2)} = ${fmt(z[0])}`,
  });
  const activation = layer.activation && layer.activation !== "linear" ? layer.activation : null;
  return {
    formula: activation ? `${activation}(x @ kernel + bias)` : "x @ kernel + bias",
    parts: [
      scrollBox(table),
      worked,
      scrollBox(vectorTable(`result (${out.length} values)`, outNames, out)),
    ],
    names: outNames,
  };
}

export function renderWalkthrough(container, trace, card, inputValues) {
  const features = card.input.features;
  let names = features.map((f) => f.name);
  let previous = features.map((f) => inputValues[f.name]);
  const steps = [
    el(
      "li",
      { class: "step", "data-layer": "input" },
      el("h4", {}, "Input ", el("code", { text: "x" })),
      el("p", { class: "note", text: "The measurements as you set them." }),
      scrollBox(
        vectorTable(
          "input",
          names.map((n, i) => `${n} (${features[i].unit})`),
          previous,
        ),
      ),
    ),
  ];
  trace.layers.forEach((layer, index) => {
    const values = flatten(layer.values ?? layer.slice ?? []);
    let formula = layer.type;
    let parts = [];
    let newNames = names.length === values.length ? names : unitNames("u", values.length);
    if (layer.type === "Dense" && layer.weights) {
      const step = denseStep(layer, previous, names);
      formula = step.formula;
      parts = step.parts;
      newNames = step.names;
      if (layer.name === "temperature" && card.calibration) {
        const t = fmt(card.calibration.temperature, 3);
        formula = `x / T with T = ${t} (kernel I / T): the calibration fitted on the ${card.calibration.fit_split} split`;
      }
    } else if (layer.type === "Normalization") {
      formula = "(x − mean) / std, with the training split's mean and std";
      parts = [scrollBox(vectorTable("normalized", names, values))];
    } else if (layer.activation === "relu") {
      formula = "max(0, x): negatives become 0";
      parts = [scrollBox(vectorTable("after ReLU", newNames, values))];
    } else if (layer.activation === "softmax") {
      formula = "exp(x) / sum(exp(x)): scores become probabilities that add up to 1";
      const labels = card.output.labels || newNames;
      parts = [scrollBox(vectorTable("probabilities", labels, values))];
      newNames = labels;
    } else {
      parts = [scrollBox(vectorTable(layer.name, newNames, values))];
    }
    steps.push(
      el(
        "li",
        { class: "step", "data-layer": layer.name },
        el(
          "h4",
          {},
          el("span", { class: "layer-index", text: `${index + 1}.` }),
          ` ${layer.name} `,
          el("span", { class: "layer-meta", text: layer.type }),
        ),
        el("p", { class: "formula" }, el("code", { text: formula })),
        parts,
      ),
    );
    previous = values;
    names = newNames;
  });
  container.replaceChildren(el("ol", { class: "walkthrough" }, steps));
}
