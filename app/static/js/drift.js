// A model's traffic against its training distribution, as GET /api/models/{name}/drift answers
// it: one bar per figure (its population stability index), the card's threshold as a dashed
// line, a crossed figure in red; "not enough data" until the window holds enough predictions.

import { el } from "./dom.js";
import { fmt } from "./format.js";
import { API, api, explain } from "./api.js";

const BAR = 22;
const HEIGHT = 90;
const LABELS = 12; // below the bars: each figure's number in the list beside

function psiCanvas(answer) {
  const figures = answer.figures;
  const threshold = figures[0]?.threshold ?? 0.2;
  // The threshold sits at two thirds of the height; a larger PSI is drawn to the top, capped.
  const top = Math.max(threshold * 1.5, ...figures.map((f) => f.psi ?? 0));
  const width = Math.max(120, figures.length * BAR + 8);
  const label = figures
    .map((f) => `${f.name} ${f.psi === null ? "not enough data" : fmt(f.psi, 3)}`)
    .join(", ");
  const canvas = el("canvas", {
    class: "drift-bars",
    width,
    height: HEIGHT + LABELS,
    role: "img",
    "aria-label": `PSI per figure (threshold ${threshold}): ${label}`,
  });
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#f4f4f4";
  ctx.fillRect(0, 0, width, HEIGHT);
  ctx.font = "10px sans-serif";
  figures.forEach((f, i) => {
    const x = 4 + i * BAR;
    ctx.fillStyle = "#555";
    ctx.fillText(String(i + 1), x + BAR / 2 - 3, HEIGHT + LABELS - 2);
    if (f.psi === null) {
      ctx.fillStyle = "#bbb";
      ctx.fillRect(x + 3, HEIGHT - 3, BAR - 6, 2);
      return;
    }
    const h = Math.max(1, (Math.min(f.psi, top) / top) * (HEIGHT - 4));
    ctx.fillStyle = f.crossed ? "#b91c1c" : "#15803d";
    ctx.fillRect(x + 3, HEIGHT - h, BAR - 6, h);
  });
  const line = HEIGHT - (threshold / top) * (HEIGHT - 4);
  ctx.strokeStyle = "#555";
  ctx.setLineDash([4, 3]);
  ctx.beginPath();
  ctx.moveTo(0, line);
  ctx.lineTo(width, line);
  ctx.stroke();
  return canvas;
}

function summaryText(answer) {
  if (!answer.window_size) return "Drift: off (GLASSBOX_DRIFT_WINDOW=0, or no reference)";
  if (!answer.enough_data) {
    return `Drift: not enough data (${answer.rows} of ${answer.min_rows} predictions)`;
  }
  return answer.crossed.length
    ? `Drift: ${answer.crossed.join(", ")} over the threshold`
    : `Drift: every figure under its threshold (last ${answer.rows} predictions)`;
}

function driftBody(answer) {
  const names = el(
    "ol",
    { class: "drift-names" },
    answer.figures.map((f, i) =>
      el(
        "li",
        { class: f.crossed ? "crossed" : null },
        el("span", { class: "drift-number", text: `${i + 1}` }),
        ` ${f.name} ${f.psi === null ? "–" : fmt(f.psi, 3)}`,
      ),
    ),
  );
  return [
    el("p", { class: "drift-summary", text: summaryText(answer) }),
    answer.figures.length ? psiCanvas(answer) : null,
    answer.figures.length ? names : null,
    el("p", {
      class: "hint",
      text:
        `Population stability index of this worker's last ${answer.window_size} predictions ` +
        "against the training split, per figure; the dashed line is the card's threshold.",
    }),
  ];
}

// The drift panel of a model, with a button that asks again.
export function driftView(name, answer) {
  const box = el("div", { class: "drift", "data-model": name });
  const refresh = el("button", { type: "button", class: "drift-refresh", text: "Refresh drift" });
  const fill = (next) => {
    box.replaceChildren(el("h3", { text: "Traffic drift" }), ...driftBody(next), refresh);
  };
  refresh.addEventListener("click", async () => {
    try {
      fill(await api(`${API}/${name}/drift`));
    } catch (error) {
      box.append(el("p", { class: "error", role: "alert", text: explain(error) }));
    }
  });
  fill(answer);
  return box;
}
