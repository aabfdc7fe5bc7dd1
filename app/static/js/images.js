// Image models: a drawing canvas (digits) or a photo upload with drag and drop

import { el } from "./dom.js";
import { product } from "./format.js";
import { API, ApiError, postFile, explain, requestSlot, exampleFile } from "./api.js";
import { renderTrace } from "./trace.js";
import { grayCanvas } from "./plots.js";
import { drawingPad } from "./drawing.js";
import {
  resultArea,
  resultColumn,
  panelOf,
  traceSection,
  answerView,
  uploadControl,
} from "./panels.js";
import { explanationArea, explanationSection, imageExplainer } from "./explanations.js";

// An image model whose layer outputs add up to at most this many values is traced with
// full=true, so every feature map can be drawn (mnist: ~41 000; catdog: ~860 000).
const FULL_TRACE_MAX_VALUES = 1_000_000;

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
  const why = explanationArea(card);
  const explainer = imageExplainer(card, why);
  const section = explanationSection(card, why, explainer.controls);
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
      explainer.explainFile(null);
      return;
    }
    result.answer.replaceChildren(answerView(prediction));
    extra?.(prediction);
    result.answer.removeAttribute("aria-busy");
    // The explanation and the trace follow the answer: none for a file the model refused, and
    // the answer is not held up by them on a busy machine.
    await Promise.all([explainer.explainFile(file), tracer.trace(file)]);
  }
  const clear = () => {
    tracer.clear();
    explainer.explainFile(null);
  };
  return { send, clear, section };
}

export function digitPanel(card) {
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

  const pad = drawingPad(`${id}-canvas`, (file) => runner.send(file));

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
        pad.clear();
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
      pad.canvas,
      controls,
      el("div", { class: "upload" }, upload.input, upload.label),
    ),
    resultColumn(result, seen, runner.section),
    traceSection(card, result, "Behind the scenes: every layer's output"),
  );
}

export function photoPanel(card) {
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
    resultColumn(result, runner.section),
    traceSection(card, result, "Behind the scenes: every layer's output"),
  );
}
