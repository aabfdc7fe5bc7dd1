// Beside each answer, why: the attributions of /explain. A signed bar per feature and the
// counterfactual in words for tabular models; the attribution map over the image the model
// saw for image models, with the method to choose.

import { el } from "./dom.js";
import { fmt } from "./format.js";
import { API, apiKey, ApiError, explain, postJson, requestSlot } from "./api.js";

const METHOD_NAMES = {
  integrated_gradients: "Integrated gradients",
  gradient_x_input: "Gradient × input",
  smoothgrad: "SmoothGrad",
  grad_cam: "Grad-CAM (last convolutional block)",
};

export function explanationArea(card) {
  const status = el("p", { class: "status explain-status", role: "status", "aria-live": "polite" });
  const body = el("div", { class: "explain-area", id: `m-${card.name}-explain` });
  return { status, body };
}

export function explanationSection(card, area, controls = null) {
  return el(
    "section",
    { class: "explain-section", "aria-label": `Why ${card.name} answered so` },
    el("h3", { text: "Why: which inputs made this answer" }),
    controls,
    area.status,
    area.body,
  );
}

function featureBars(explanation) {
  const largest = Math.max(...explanation.features.map((f) => Math.abs(f.attribution)), 1e-12);
  const unit = explanation.target === "value" ? "" : " probability";
  const list = el("ul", {
    class: "attributions",
    "aria-label": `What each feature added to ${explanation.target}`,
  });
  for (const f of explanation.features) {
    const bar = el("span", {
      class: `attribution-bar ${f.attribution >= 0 ? "up" : "down"}`,
      "aria-hidden": "true",
    });
    bar.style.setProperty("--a", String(Math.abs(f.attribution) / largest));
    list.append(
      el(
        "li",
        { "data-feature": f.name },
        el("span", { class: "attribution-label", text: `${f.name} = ${fmt(f.value, 2)} ${f.unit}` }),
        el("span", { class: "attribution-track", "aria-hidden": "true" }, bar),
        el("span", {
          class: "attribution-value",
          text: `${f.attribution >= 0 ? "+" : "−"}${fmt(Math.abs(f.attribution), 3)}${unit}`,
        }),
      ),
    );
  }
  return list;
}

function completenessNote(explanation) {
  const c = explanation.completeness;
  if (!c) return null;
  return el("p", {
    class: "note",
    text:
      `Against ${explanation.baseline}: the attributions add up to ${fmt(c.attribution_sum, 3)}, ` +
      `the change of ${explanation.target} is ${fmt(c.output_change, 3)} ` +
      `(${explanation.steps} steps, ${fmt(c.relative_error * 100, 2)}% apart).`,
  });
}

// Tabular: explain the body the answer was for; a newer body cancels an older request.
export function tabularExplainer(card, area) {
  const slot = requestSlot();
  return async function explainFor(body) {
    area.status.textContent = "Working out which inputs mattered…";
    let explanation;
    try {
      explanation = await postJson(`${API}/${card.name}/explain`, body, slot());
    } catch (error) {
      const message = explain(error);
      if (!message) return;
      area.body.replaceChildren();
      area.status.textContent =
        error.status === 422 ? "No explanation for an input the model refuses." : `No explanation: ${message}`;
      return;
    }
    area.status.textContent = "";
    area.body.replaceChildren(
      featureBars(explanation),
      el("p", { class: "counterfactual", text: explanation.counterfactual.sentence }),
      completenessNote(explanation),
    );
  };
}

// Images: the overlay PNG for the chosen method; the JSON answer for its numbers.
export function imageExplainer(card, area) {
  const slot = requestSlot();
  const methods = card.explanation_methods || ["integrated_gradients"];
  const select = el(
    "select",
    { id: `m-${card.name}-method`, "aria-label": "Explanation method" },
    ...methods.map((m) => el("option", { value: m, text: METHOD_NAMES[m] || m })),
  );
  let lastFile = null;
  let shownUrl = null; // the overlay's object URL, revoked when another replaces it
  const show = (...children) => {
    if (shownUrl) URL.revokeObjectURL(shownUrl);
    shownUrl = null;
    area.body.replaceChildren(...children);
  };
  const controls = el(
    "div",
    { class: "explain-controls" },
    el("label", { for: select.id, text: "Method " }),
    select,
  );
  async function explainFile(file) {
    lastFile = file;
    const signal = slot(); // a newer file, a cleared one or another method cancels this one
    if (!file) {
      show();
      area.status.textContent = "";
      return;
    }
    const method = select.value;
    area.status.textContent = `Working out where the model looked (${METHOD_NAMES[method]})…`;
    const form = new FormData();
    form.append("file", file, file.name || "image.png");
    const key = apiKey();
    let blob;
    try {
      const response = await fetch(`${API}/${card.name}/explain?method=${method}&format=png`, {
        method: "POST",
        body: form,
        signal,
        headers: key ? { "X-API-Key": key } : {},
      });
      if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
      blob = await response.blob();
    } catch (error) {
      const message = explain(error);
      if (!message) return;
      show();
      area.status.textContent = `No explanation: ${message}`;
      return;
    }
    const url = URL.createObjectURL(blob);
    const image = el("img", {
      class: "overlay",
      src: url,
      alt: `${METHOD_NAMES[method]}: red where the image raised the answer, blue where it lowered it`,
    });
    area.status.textContent = "";
    show(
      image,
      el("p", {
        class: "note",
        text: "Red: pixels that raised the answer's probability; blue: pixels that lowered it.",
      }),
    );
    shownUrl = url;
  }
  select.addEventListener("change", () => explainFile(lastFile));
  return { explainFile, controls };
}
