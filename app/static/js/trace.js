// The layer trace, drawn generically from its shapes: feature maps, heat maps, bars, strips.

import { el } from "./dom.js";
import { fmt, shapeText, flatten } from "./format.js";
import { colourScale } from "./colours.js";
import { heatCanvas, barCanvas, stripCanvas, probabilityBars } from "./plots.js";

// Feature maps drawn per convolution-shaped layer: all of a small layer's (up to 64), the
// first 16 of a large one's (catdog's 48x48x32 stem), so the page stays quick to draw and read.
const MAX_MAPS = 64;
const MAX_MAPS_LARGE = 16;
const LARGE_LAYER_VALUES = 32_768;
// Layers whose feature maps show at once; deeper ones fold into a "show" button.
const OPEN_MAP_LAYERS = 8;

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

export function renderTrace(container, trace, card) {
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
