// A classifier's reliability diagram from its card: per confidence bin, accuracy against mean
// confidence (a dot, its area by the answers in the bin) beside the diagonal of perfect
// calibration; the test split's bins and, where the card has them, the pooled out-of-fold ones.

import { el } from "./dom.js";
import { fmt } from "./format.js";

const SIZE = 200;
const PAD = 24; // left of the plot, and below it
const TOP = 10; // above it, so a dot at accuracy 1 is whole
const SERIES = [
  { key: "test", colour: "#1d4ed8", name: "test split" },
  { key: "out_of_fold", colour: "#c2410c", name: "out of fold" },
];

function bins(cal, key) {
  const table = key === "test" ? cal.reliability_after : cal.out_of_fold?.reliability;
  return (table ?? []).filter((b) => b.count);
}

export function reliabilityDiagram(cal) {
  const shown = SERIES.filter((s) => bins(cal, s.key).length);
  const point = (b) => `${fmt(b.mean_confidence, 2)}→${fmt(b.accuracy, 2)} (${b.count})`;
  const label = shown
    .map((s) => `${s.name}: ${bins(cal, s.key).map(point).join(", ")}`)
    .join("; ");
  const canvas = el("canvas", {
    class: "reliability-diagram",
    width: SIZE + PAD + TOP,
    height: SIZE + PAD + TOP,
    role: "img",
    "aria-label": `Reliability diagram, accuracy against confidence: ${label}`,
  });
  const ctx = canvas.getContext("2d");
  const x = (v) => PAD + v * SIZE;
  const y = (v) => TOP + SIZE - v * SIZE;
  ctx.fillStyle = "#f4f4f4";
  ctx.fillRect(PAD, TOP, SIZE, SIZE);
  ctx.strokeStyle = "#999";
  ctx.setLineDash([4, 3]);
  ctx.beginPath();
  ctx.moveTo(x(0), y(0));
  ctx.lineTo(x(1), y(1));
  ctx.stroke();
  ctx.setLineDash([]);
  ctx.fillStyle = "#555";
  ctx.font = "10px sans-serif";
  ctx.fillText("0", PAD - 10, y(0));
  ctx.fillText("1", PAD - 10, y(1) + 8);
  ctx.fillText("confidence →", PAD + SIZE - 70, y(0) + 16);
  ctx.save();
  ctx.translate(10, y(0.5) + 20);
  ctx.rotate(-Math.PI / 2);
  ctx.fillText("accuracy", 0, 0);
  ctx.restore();
  for (const series of shown) {
    const table = bins(cal, series.key);
    const most = Math.max(...table.map((b) => b.count));
    ctx.fillStyle = series.colour;
    for (const b of table) {
      const r = 2 + 6 * Math.sqrt(b.count / most);
      ctx.beginPath();
      ctx.arc(x(b.mean_confidence), y(b.accuracy), r, 0, 2 * Math.PI);
      ctx.fill();
    }
  }
  const key = el(
    "p",
    { class: "hint" },
    shown.map((s) => el("span", { class: `key key-${s.key}`, text: `● ${s.name}  ` })),
  );
  return el("figure", { class: "reliability-figure" }, canvas, el("figcaption", {}, key));
}

// The ECE the target is judged on, with its bootstrap 95% interval, in words.
export function eceLine(cal) {
  const parts = [];
  const interval = (e) =>
    `${fmt(e.ece, 4)} (95% interval ${fmt(e.low, 4)}–${fmt(e.high, 4)}, ${e.rows} answers)`;
  if (cal.ece_interval) parts.push(`test split: ECE ${interval(cal.ece_interval)}`);
  if (cal.out_of_fold) {
    const folds = cal.out_of_fold.folds;
    parts.push(`pooled out-of-fold answers (${folds} folds): ECE ${interval(cal.out_of_fold)}`);
  }
  if (!parts.length) return null;
  return el("p", { class: "ece-interval", text: `ECE on the ${parts.join("; ")}.` });
}
