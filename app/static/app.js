// Glassbox web page: try every loaded model and watch its layers work.
// Plain JavaScript, no build step. Everything the page shows comes from the JSON API:
// GET /api/models, GET /api/models/{name}/card, POST .../predict and POST .../trace.
"use strict";

const API = "/api/models";
const DEBOUNCE_MS = 250;
// A tabular model whose Dense layers hold at most this many weights gets them in its trace,
// for the "x @ kernel + bias" walk-through (iris: 67; housing's 256-wide layers: far more).
const WALKTHROUGH_MAX_WEIGHTS = 1000;
// An image model whose layer outputs add up to at most this many values is traced with
// full=true, so every feature map can be drawn (mnist: ~41 000; catdog: ~860 000).
const FULL_TRACE_MAX_VALUES = 1_000_000;
// Feature maps drawn per convolution-shaped layer: all of a small layer's (up to 64), the
// first 16 of a large one's (catdog's 48x48x32 stem), so the page stays quick to draw and read.
const MAX_MAPS = 64;
const MAX_MAPS_LARGE = 16;
const LARGE_LAYER_VALUES = 32_768;
// Layers whose feature maps show at once; deeper ones fold into a "show" button.
const OPEN_MAP_LAYERS = 8;

// ---------------------------------------------------------------------------------------------
// Small helpers

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key === "class") node.className = value;
    else if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

function product(shape) {
  return shape.reduce((acc, n) => acc * (n ?? 1), 1);
}

function fmt(value, digits = 3) {
  if (!Number.isFinite(value)) return String(value);
  const abs = Math.abs(value);
  if (abs !== 0 && (abs >= 1e5 || abs < 1e-3)) return value.toExponential(2);
  return value.toFixed(digits);
}

function percent(p) {
  return `${(p * 100).toFixed(1)} %`;
}

function shapeText(shape) {
  return `(${shape.map((n) => (n === null ? "batch" : n)).join(" × ")})`;
}

function flatten(values) {
  return Array.isArray(values) ? values.flat(Infinity) : [values];
}

class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = body?.code;
    this.field = body?.field;
  }
}

// Where the service requires API keys, the page asks for one after a 401 and keeps it for
// this browser tab only (sessionStorage), sending it as X-API-Key.
const KEY_STORE = "glassbox-api-key";

function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE);
  } catch {
    return null;
  }
}

function withKey(options = {}) {
  const key = apiKey();
  if (!key) return options;
  return { ...options, headers: { ...(options.headers || {}), "X-API-Key": key } };
}

async function api(path, options = {}) {
  const response = await fetch(path, withKey(options));
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    if (error.name === "AbortError") throw error;
    if (response.ok) throw new Error("the service's answer was not JSON");
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

function postJson(path, data, signal) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
    signal,
  });
}

function postFile(path, file, signal) {
  const form = new FormData();
  form.append("file", file, file.name || "image.png");
  return api(path, { method: "POST", body: form, signal });
}

// What went wrong, in plain words. Null for a request the page itself cancelled.
function explain(error) {
  if (error?.name === "AbortError") return null;
  if (!(error instanceof ApiError)) {
    return `The service could not be reached (${error?.message || error}). Is it still running?`;
  }
  const lead =
    {
      400: "The request was not understood.",
      401: "This service needs an API key: enter one at the top of the page.",
      404: "Not found.",
      413: "That is too large for the service.",
      415: "That file is not an image the model can read.",
      422: "The model refused the input.",
      503: "The model is not ready, or the service is busy. Try again in a moment.",
      504: "The model took too long to answer.",
    }[error.status] || `The service answered with an error (${error.status}).`;
  return `${lead} ${error.message}`;
}

// A request slot: a newer request cancels the older one, so a stale answer never wins.
function requestSlot() {
  let controller = null;
  return () => {
    controller?.abort();
    controller = new AbortController();
    return controller.signal;
  };
}

// ---------------------------------------------------------------------------------------------
// Colours: a viridis-like ramp for values >= 0, blue-white-red for signed values.

const RAMP = [
  [68, 1, 84],
  [59, 82, 139],
  [33, 145, 140],
  [94, 201, 98],
  [253, 231, 37],
];

function sequential(t) {
  const x = Math.min(1, Math.max(0, t)) * (RAMP.length - 1);
  const i = Math.min(RAMP.length - 2, Math.floor(x));
  const f = x - i;
  return RAMP[i].map((c, k) => Math.round(c + (RAMP[i + 1][k] - c) * f));
}

function diverging(t) {
  const x = Math.min(1, Math.max(-1, t));
  const white = [247, 247, 247];
  const end = x < 0 ? [33, 102, 172] : [178, 24, 43];
  const f = Math.abs(x);
  return white.map((c, k) => Math.round(c + (end[k] - c) * f));
}

// A colour scale for a set of values: sequential from 0 when none is negative, else diverging.
function colourScale(min, max) {
  if (min >= 0) {
    const top = max > 0 ? max : 1;
    return { signed: false, colour: (v) => sequential(v / top) };
  }
  const top = Math.max(Math.abs(min), Math.abs(max)) || 1;
  return { signed: true, colour: (v) => diverging(v / top) };
}

function rgb([r, g, b]) {
  return `rgb(${r} ${g} ${b})`;
}

// Text colour that stays readable on a cell coloured `c`.
function inkOn([r, g, b]) {
  return 0.299 * r + 0.587 * g + 0.114 * b > 140 ? "#111" : "#fff";
}

// ---------------------------------------------------------------------------------------------
// Drawing values

// A (height x width) grid of values as a pixelated canvas; `get(y, x)` gives each value.
function heatCanvas(height, width, get, colour, label, cssSize) {
  const canvas = el("canvas", { class: "map", width, height, role: "img", "aria-label": label });
  const ctx = canvas.getContext("2d");
  const image = ctx.createImageData(width, height);
  for (let y = 0; y < height; y += 1) {
    for (let x = 0; x < width; x += 1) {
      const [r, g, b] = colour(get(y, x));
      const at = (y * width + x) * 4;
      image.data[at] = r;
      image.data[at + 1] = g;
      image.data[at + 2] = b;
      image.data[at + 3] = 255;
    }
  }
  ctx.putImageData(image, 0, 0);
  if (cssSize) canvas.style.width = `${cssSize}px`;
  return canvas;
}

function grayCanvas(matrix, label, cssSize) {
  const h = matrix.length;
  const w = matrix[0].length;
  return heatCanvas(
    h,
    w,
    (y, x) => matrix[y][x],
    (v) => [v, v, v].map(Math.round),
    label,
    cssSize,
  );
}

// Bars for a vector (Dense outputs, slices): a zero line, positive up, negative down.
function barCanvas(values, label) {
  const n = values.length;
  const barWidth = n <= 16 ? 16 : n <= 64 ? 6 : n <= 256 ? 3 : 1;
  const width = Math.max(60, n * barWidth);
  const height = 72;
  const canvas = el("canvas", { class: "bars", width, height, role: "img", "aria-label": label });
  const ctx = canvas.getContext("2d");
  const max = Math.max(0, ...values);
  const min = Math.min(0, ...values);
  const span = max - min || 1;
  const zero = (max / span) * (height - 2) + 1;
  ctx.fillStyle = "#f4f4f4";
  ctx.fillRect(0, 0, width, height);
  values.forEach((v, i) => {
    const h = (Math.abs(v) / span) * (height - 2);
    ctx.fillStyle = v >= 0 ? "#c2410c" : "#1d4ed8";
    const gap = barWidth > 3 ? 1 : 0;
    ctx.fillRect(
      i * barWidth,
      v >= 0 ? zero - h : zero,
      barWidth - gap,
      Math.max(h, v === 0 ? 0 : 1),
    );
  });
  ctx.fillStyle = "#555";
  ctx.fillRect(0, Math.round(zero), width, 1);
  canvas.style.width = `${Math.min(width, 640)}px`;
  return canvas;
}

// A long vector as rows of coloured cells (Flatten, Dropout, slices of large outputs).
function stripCanvas(values, label, scale) {
  const columns = Math.min(64, values.length);
  const rows = Math.ceil(values.length / columns);
  return heatCanvas(
    rows,
    columns,
    (y, x) => values[y * columns + x] ?? 0,
    scale.colour,
    label,
    Math.min(640, columns * 8),
  );
}

function probabilityBars(probabilities, best) {
  const list = el("ul", { class: "probabilities", "aria-label": "Probability of each class" });
  for (const [label, p] of Object.entries(probabilities)) {
    const bar = el("span", { class: "bar", "aria-hidden": "true" });
    bar.style.setProperty("--p", String(p));
    list.append(
      el(
        "li",
        { class: label === best ? "best" : null, "data-label": label },
        el("span", { class: "prob-label", text: label }),
        el("span", { class: "bar-track", "aria-hidden": "true" }, bar),
        el("span", { class: "prob-value", text: percent(p) }),
      ),
    );
  }
  return list;
}

function answerView(prediction) {
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
  );
}

// ---------------------------------------------------------------------------------------------
// The layer trace, drawn generically from its shapes

function summaryText(summary) {
  return (
    `min ${fmt(summary.min)} · max ${fmt(summary.max)} · mean ${fmt(summary.mean)} · ` +
    `zeros ${(summary.zero_fraction * 100).toFixed(0)} %`
  );
}

function layerHeader(layer) {
  const bits = [layer.type];
  if (layer.activation && layer.activation !== "linear") bits.push(layer.activation);
  bits.push(shapeText(layer.output_shape));
  return el(
    "div",
    { class: "layer-head" },
    el(
      "h4",
      {},
      el("span", { class: "layer-index", text: `${layer.index + 1}.` }),
      ` ${layer.name}`,
    ),
    el("span", { class: "layer-meta", text: bits.join(" · ") }),
    el("span", { class: "layer-summary", text: summaryText(layer.summary) }),
  );
}

// The channels of one (height, width, channels) layer output as heat maps, each on its own
// scale (a weak channel's pattern shows as clearly as a strong one's).
function featureMaps(layer, notes, open) {
  const [h, w, c] = layer.output_shape.slice(1);
  const values = layer.values;
  const cssSize = Math.max(44, Math.min(96, w * 2));
  const box = el("div", { class: "maps" });
  if (c === 3 && layer.type === "Rescaling" && layer.summary.min >= 0) {
    // The image itself after rescaling: draw it in colour.
    const top = layer.summary.max || 1;
    box.append(
      heatCanvas(
        h,
        w,
        (y, x) => values[y][x],
        (px) => px.map((v) => Math.round((v / top) * 255)),
        `${layer.name}: the ${h}×${w} colour image the model saw`,
        Math.min(192, w * 2),
      ),
    );
    return box;
  }
  const shown = Math.min(c, layer.size > LARGE_LAYER_VALUES ? MAX_MAPS_LARGE : MAX_MAPS);
  let signed = false;
  for (let k = 0; k < shown; k += 1) {
    let min = Infinity;
    let max = -Infinity;
    for (const row of values) {
      for (const pixel of row) {
        min = Math.min(min, pixel[k]);
        max = Math.max(max, pixel[k]);
      }
    }
    const scale = colourScale(min, max);
    signed ||= scale.signed;
    box.append(
      heatCanvas(
        h,
        w,
        (y, x) => values[y][x][k],
        scale.colour,
        `${layer.name}, channel ${k}: ${fmt(min)} to ${fmt(max)}`,
        cssSize,
      ),
    );
  }
  const colours = signed
    ? "each map on its own scale, blue below zero, red above"
    : "each map on its own scale, dark is zero, yellow its maximum";
  const text = `${shown} of ${c} feature maps, ${h}×${w} each; ${colours}.`;
  if (open) {
    notes.push(el("p", { class: "note", text }));
    return box;
  }
  // Deeper layers fold away, so the first convolutions stay in view.
  return el(
    "details",
    { class: "more-maps" },
    el("summary", { text: `Show ${shown} feature maps (${h}×${w})` }),
    box,
    el("p", { class: "note", text }),
  );
}

function layerBody(layer, context) {
  const shape = layer.output_shape.slice(1);
  const notes = [];
  let view = null;
  if (layer.values === null || layer.values === undefined) {
    const size = layer.size.toLocaleString("en-US");
    if (shape.length === 3) {
      // The first values of a feature-map stack are a corner pixel's channels: not worth a
      // picture. The statistics above say how the layer responded.
      const [h, w, c] = shape;
      notes.push(
        el("p", {
          class: "note",
          text: `${c} feature maps of ${h}×${w} (${size} values): statistics only in this trace.`,
        }),
      );
      return notes;
    }
    const slice = layer.slice || [];
    const scale = colourScale(Math.min(0, layer.summary.min), layer.summary.max);
    view = slice.length
      ? stripCanvas(slice, `${layer.name}: first ${slice.length} values`, scale)
      : null;
    notes.push(
      el("p", {
        class: "note",
        text: `${size} values: the first ${slice.length} are shown, with the statistics.`,
      }),
    );
  } else if (shape.length === 3) {
    view = featureMaps(layer, notes, context.mapLayers++ < OPEN_MAP_LAYERS);
  } else if (shape.length === 2) {
    const [h, w] = shape;
    const scale = colourScale(layer.summary.min, layer.summary.max);
    view = heatCanvas(
      h,
      w,
      (y, x) => layer.values[y][x],
      scale.colour,
      `${layer.name}: ${h}×${w}`,
      112,
    );
  } else {
    const values = flatten(layer.values);
    const labels = context.labels;
    if (context.isLast && labels && labels.length === values.length) {
      const probs = Object.fromEntries(labels.map((label, i) => [label, values[i]]));
      view = probabilityBars(probs, context.best);
    } else if (values.length <= 256) {
      view = barCanvas(values, `${layer.name}: ${values.length} values as bars`);
      if (values.length <= 16) {
        notes.push(el("p", { class: "note numbers", text: values.map((v) => fmt(v)).join("  ") }));
      }
    } else {
      const scale = colourScale(layer.summary.min, layer.summary.max);
      view = stripCanvas(values, `${layer.name}: ${values.length} values`, scale);
      notes.push(el("p", { class: "note", text: `${values.length} values, 64 to a row.` }));
    }
  }
  return [view, ...notes];
}

function renderTrace(container, trace, card) {
  const context = {
    mapLayers: 0,
    labels: card.output.labels,
    best: trace.prediction.label,
    isLast: false,
  };
  const list = el("ol", { class: "trace" });
  trace.layers.forEach((layer, i) => {
    context.isLast = i === trace.layers.length - 1;
    list.append(
      el(
        "li",
        { class: "layer", "data-layer": layer.name },
        layerHeader(layer),
        layerBody(layer, context),
      ),
    );
  });
  container.replaceChildren(list);
}

// ---------------------------------------------------------------------------------------------
// The tabular walk-through: input → normalize → x @ kernel + bias → ReLU → … → softmax

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

function scrollBox(child) {
  // Focusable, so a table wider than a phone screen can be scrolled with the arrow keys.
  return el("div", { class: "scroll", tabindex: 0 }, child);
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

function renderWalkthrough(container, trace, card, inputValues) {
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

// ---------------------------------------------------------------------------------------------
// The model card

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

function cardView(card) {
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
    el("details", {}, el("summary", { text: "Baselines" }), baselinesTable(card)),
    layersTable(card),
  );
}

// ---------------------------------------------------------------------------------------------
// Panels: shared result area

function resultArea(id) {
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
function panelOf(kind, inputs, answer, trace) {
  return el("div", { class: `panel ${kind}` }, el("div", { class: "panel-top" }, inputs, answer), trace);
}

function traceSection(card, result, title) {
  return el(
    "section",
    { class: "trace-section", "aria-label": `Layer trace of ${card.name}` },
    el("h3", { text: title }),
    result.traceStatus,
    result.trace,
  );
}

// ---------------------------------------------------------------------------------------------
// Tabular models: sliders with units; the answer follows them (debounced)

function niceStep(range) {
  if (!(range > 0)) return 0.01;
  const raw = range / 100;
  const power = 10 ** Math.floor(Math.log10(raw));
  return power;
}

function decimalsOf(step) {
  return Math.max(0, -Math.floor(Math.log10(step)));
}

function tabularPanel(card) {
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
    await Promise.all([answerFor(body), traceFor(body)]);
  }
  const update = debounce(run, DEBOUNCE_MS);

  const panel = panelOf(
    "tabular",
    el("div", { class: "try" }, el("h3", { text: "Try it" }), form),
    el("div", { class: "result" }, el("h3", { text: "Answer" }), result.error, result.answer),
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

// ---------------------------------------------------------------------------------------------
// Image models: a drawing canvas (digits) or a photo upload with drag and drop

function traceValues(card) {
  return card.layers.reduce((acc, l) => acc + product(l.output_shape), 0);
}

// The trace of an image. With full=true every value of every layer comes back, so every feature
// map can be drawn: ~41 000 values for mnist, ~860 000 (15 MB of JSON, under a second on
// loopback) for catdog. A model above FULL_TRACE_MAX_VALUES, or a service whose
// trace_max_values limit answers 413, gets the light trace: each layer's statistics.
function imageTracer(card, result) {
  const slot = requestSlot();
  const base = `${API}/${card.name}`;
  const full = traceValues(card) <= FULL_TRACE_MAX_VALUES;
  const status = (text) => {
    result.traceStatus.textContent = text;
  };

  async function light(file, note) {
    const trace = await postFile(`${base}/trace`, file, slot());
    renderTrace(result.trace, trace, card);
    status(note);
  }

  async function trace(file) {
    status("Tracing the layers…");
    try {
      if (!full) {
        await light(file, "Statistics of each layer: this model's full trace is too large.");
        return;
      }
      try {
        const trace = await postFile(`${base}/trace?full=true`, file, slot());
        renderTrace(result.trace, trace, card);
        status("");
      } catch (error) {
        if (!(error instanceof ApiError && error.status === 413)) throw error;
        await light(file, `Statistics of each layer only: ${error.message}`);
      }
    } catch (error) {
      const message = explain(error);
      if (message) {
        status(`No trace: ${message}`);
        result.trace.replaceChildren();
      }
    }
  }

  function clear() {
    slot();
    status("");
    result.trace.replaceChildren();
  }

  return { trace, clear };
}

function imageRunner(card, result, extra) {
  const predictSlot = requestSlot();
  const base = `${API}/${card.name}`;
  const tracer = imageTracer(card, result);
  async function send(file) {
    result.showError(null);
    result.answer.setAttribute("aria-busy", "true");
    let prediction;
    try {
      prediction = await postFile(`${base}/predict?return_input=true`, file, predictSlot());
    } catch (error) {
      const message = explain(error);
      if (!message) return; // a newer file took this one's place
      result.showError(message);
      result.answer.removeAttribute("aria-busy");
      result.answer.replaceChildren();
      extra?.(null);
      tracer.clear();
      return;
    }
    result.answer.replaceChildren(answerView(prediction));
    extra?.(prediction);
    result.answer.removeAttribute("aria-busy");
    // The trace follows the answer: none for a file the model refused, and the answer is not
    // held up by a large trace on a busy machine.
    await tracer.trace(file);
  }
  return { send, clear: tracer.clear };
}

async function exampleFile(name) {
  const response = await fetch(`/examples/${name}`, withKey());
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const blob = await response.blob();
  const ext = (blob.type.split("/")[1] || "png").replace("jpeg", "jpg");
  return new File([blob], `${name}-example.${ext}`, { type: blob.type });
}

function uploadControl(id, label, onFile) {
  const input = el("input", { type: "file", id, accept: "image/*", class: "file" });
  input.addEventListener("change", () => {
    if (input.files && input.files[0]) onFile(input.files[0]);
  });
  return { input, label: el("label", { for: id, class: "file-label", text: label }) };
}

function digitPanel(card) {
  const id = `m-${card.name}`;
  const result = resultArea(id);
  const seen = el("div", { class: "seen", "aria-live": "polite" });
  const runner = imageRunner(card, result, (prediction) => {
    if (!prediction || !prediction.model_input) {
      seen.replaceChildren();
      return;
    }
    seen.replaceChildren(
      el("h4", { text: "What the model saw" }),
      grayCanvas(
        prediction.model_input,
        "The 28 by 28 image the model saw, light ink on black",
        140,
      ),
      el("p", { class: "note", text: "28×28, inverted and centred like MNIST." }),
    );
  });

  const size = 280;
  const canvas = el("canvas", {
    class: "draw",
    id: `${id}-canvas`,
    width: size,
    height: size,
    role: "img",
    "aria-label": "Drawing area: draw one digit with the mouse, a pen or a finger",
  });
  const ctx = canvas.getContext("2d");
  let hasInk = false;
  let drawing = null;
  const clear = () => {
    ctx.fillStyle = "#fff";
    ctx.fillRect(0, 0, size, size);
    hasInk = false;
  };
  clear();
  const point = (event) => {
    const box = canvas.getBoundingClientRect();
    return [
      ((event.clientX - box.left) * size) / box.width,
      ((event.clientY - box.top) * size) / box.height,
    ];
  };
  const submitDrawing = debounce(() => {
    if (!hasInk) return;
    canvas.toBlob(
      (blob) => runner.send(new File([blob], "drawing.png", { type: "image/png" })),
      "image/png",
    );
  }, 350);
  canvas.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    canvas.setPointerCapture(event.pointerId);
    drawing = { id: event.pointerId, last: point(event) };
    ctx.lineCap = "round";
    ctx.lineJoin = "round";
    ctx.lineWidth = 20;
    ctx.strokeStyle = "#111";
    ctx.fillStyle = "#111";
    const [x, y] = drawing.last;
    ctx.beginPath();
    ctx.arc(x, y, 10, 0, Math.PI * 2);
    ctx.fill();
    hasInk = true;
  });
  canvas.addEventListener("pointermove", (event) => {
    if (!drawing || event.pointerId !== drawing.id) return;
    const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [event];
    for (const e of events.length ? events : [event]) {
      const next = point(e);
      ctx.beginPath();
      ctx.moveTo(...drawing.last);
      ctx.lineTo(...next);
      ctx.stroke();
      drawing.last = next;
    }
  });
  const end = (event) => {
    if (!drawing || event.pointerId !== drawing.id) return;
    drawing = null;
    submitDrawing();
  };
  canvas.addEventListener("pointerup", end);
  canvas.addEventListener("pointercancel", end);

  const upload = uploadControl(`${id}-file`, "Or upload a photo of a digit", (file) =>
    runner.send(file),
  );
  const controls = el(
    "div",
    { class: "controls" },
    el("button", {
      type: "button",
      text: "Clear",
      onclick: () => {
        clear();
        runner.clear();
        result.answer.replaceChildren();
        result.showError(null);
        seen.replaceChildren();
      },
    }),
    el("button", {
      type: "button",
      class: "secondary",
      text: "Try the example digit",
      onclick: () =>
        exampleFile(card.name)
          .then(runner.send)
          .catch((e) => result.showError(explain(e))),
    }),
  );
  return panelOf(
    "image digits",
    el(
      "div",
      { class: "try" },
      el("h3", { text: "Draw a digit" }),
      el("p", {
        class: "hint",
        text:
          "Draw one digit, 0 to 9, large and in the middle: the answer comes when you lift " +
          "the pen. Without a mouse or touch screen, upload an image or try the example.",
      }),
      canvas,
      controls,
      el("div", { class: "upload" }, upload.input, upload.label),
    ),
    el("div", { class: "result" }, el("h3", { text: "Answer" }), result.error, result.answer, seen),
    traceSection(card, result, "Behind the scenes: every layer's output"),
  );
}

function photoPanel(card) {
  const id = `m-${card.name}`;
  const result = resultArea(id);
  const preview = el("img", { class: "preview", alt: "", hidden: true });
  const runner = imageRunner(card, result);
  let previewUrl = null;
  const take = (file) => {
    if (previewUrl) URL.revokeObjectURL(previewUrl);
    previewUrl = URL.createObjectURL(file);
    preview.src = previewUrl;
    preview.alt = `Your photo: ${file.name}`;
    preview.hidden = !file.type.startsWith("image/");
    runner.send(file);
  };
  const upload = uploadControl(`${id}-file`, "Choose a photo", take);
  const zone = el(
    "div",
    { class: "dropzone" },
    el("p", {}, "Drop a photo here, or "),
    upload.input,
    upload.label,
    el("p", {
      class: "hint",
      text: `It is resized to ${card.input.image.height}×${card.input.image.width}, as in training.`,
    }),
  );
  zone.addEventListener("dragover", (event) => {
    event.preventDefault();
    zone.classList.add("over");
  });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer?.files?.[0];
    if (file) take(file);
  });
  return panelOf(
    "image photos",
    el(
      "div",
      { class: "try" },
      el("h3", { text: "Upload a photo" }),
      zone,
      el("button", {
        type: "button",
        class: "secondary",
        text: "Try the example photo",
        onclick: () =>
          exampleFile(card.name)
            .then(take)
            .catch((e) => result.showError(explain(e))),
      }),
      preview,
    ),
    el("div", { class: "result" }, el("h3", { text: "Answer" }), result.error, result.answer),
    traceSection(card, result, "Behind the scenes: every layer's output"),
  );
}

function tryPanel(card) {
  if (card.input.kind === "features") return tabularPanel(card);
  if (card.input.image?.preprocessing === "mnist") return digitPanel(card);
  return photoPanel(card);
}

// ---------------------------------------------------------------------------------------------
// The page

function modelSection(summary) {
  const section = el("section", {
    class: "model",
    id: `model-${summary.name}`,
    "aria-labelledby": `title-${summary.name}`,
  });
  const states = summary.versions.map((v) => `v${v.version} ${v.state}`).join(", ");
  section.append(
    el(
      "h2",
      { id: `title-${summary.name}` },
      summary.name,
      " ",
      el("span", { class: "task", text: summary.task ?? "" }),
      " ",
      el("span", { class: "version", text: states }),
    ),
  );
  return section;
}

async function fillSection(section, summary) {
  if (summary.default_version === null) {
    const reasons = summary.versions
      .filter((v) => v.reason)
      .map((v) => `v${v.version}: ${v.reason}`);
    section.append(
      el("p", {
        class: "status",
        text: `Not serving yet (${summary.versions.map((v) => v.state).join(", ")}). ${reasons.join(" ")}`.trim(),
      }),
    );
    return;
  }
  try {
    const card = await api(`${API}/${summary.name}/card`);
    section.append(cardView(card), tryPanel(card));
  } catch (error) {
    section.append(
      el("p", {
        class: "error",
        role: "alert",
        text: `This model's card could not be read. ${explain(error)}`,
      }),
    );
  }
}

function askForKey(status, refused) {
  const form = document.getElementById("key-form");
  const input = document.getElementById("api-key");
  form.hidden = false;
  status.textContent = refused
    ? "That API key was refused. Enter a valid one to use the models."
    : "This service needs an API key. Enter it above to use the models.";
  form.onsubmit = (event) => {
    event.preventDefault();
    try {
      sessionStorage.setItem(KEY_STORE, input.value.trim());
    } catch {
      // Storage is off: the key cannot be kept.
    }
    window.location.reload();
  };
  input.focus();
}

async function boot() {
  const status = document.getElementById("page-status");
  const main = document.getElementById("models");
  const nav = document.getElementById("model-nav");
  let list;
  try {
    list = await api(API);
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) {
      askForKey(status, Boolean(apiKey()));
      return;
    }
    status.textContent = `The model list could not be loaded. ${explain(error)}`;
    status.classList.add("error");
    return;
  }
  if (!list.models.length) {
    status.textContent = "No models are loaded. Train one, then restart the service.";
    return;
  }
  const ready = list.models.filter((m) => m.default_version !== null).length;
  status.textContent = `${ready} of ${list.models.length} models ready.`;
  for (const summary of list.models) {
    nav.append(el("li", {}, el("a", { href: `#model-${summary.name}`, text: summary.name })));
    const section = modelSection(summary);
    main.append(section);
    await fillSection(section, summary);
  }
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", boot);
