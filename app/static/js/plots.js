// Drawing values: heat maps, bars, strips of cells and probability bars.

import { el } from "./dom.js";
import { percent } from "./format.js";

// A (height x width) grid of values as a pixelated canvas; `get(y, x)` gives each value.
export function heatCanvas(height, width, get, colour, label, cssSize) {
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

export function grayCanvas(matrix, label, cssSize) {
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
export function barCanvas(values, label) {
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
export function stripCanvas(values, label, scale) {
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

export function probabilityBars(probabilities, best) {
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
