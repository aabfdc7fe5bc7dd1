// Glassbox web page: try every loaded model and watch its layers work.
// Plain JavaScript modules, no build step. Everything the page shows comes from the JSON API.
// Start-up: load the model list, build the nav and one section per model, then set
// body[data-ready=true].

import { el } from "./dom.js";
import { API, ApiError, api, apiKey, storeKey, explain } from "./api.js";
import { cardView } from "./cards.js";
import { driftView } from "./drift.js";
import { rolloutView } from "./rollout.js";
import { tabularPanel } from "./tabular.js";
import { digitPanel, photoPanel } from "./images.js";

function tryPanel(card) {
  if (card.input.kind === "features") return tabularPanel(card);
  if (card.input.image?.preprocessing === "mnist") return digitPanel(card);
  return photoPanel(card);
}

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
    const [card, rollout, drift] = await Promise.all([
      api(`${API}/${summary.name}/card`),
      api(`${API}/${summary.name}/rollout`),
      api(`${API}/${summary.name}/drift`),
    ]);
    card.explanation_methods = summary.explanation_methods;
    section.append(
      cardView(card),
      rolloutView(rollout) ?? "",
      driftView(summary.name, drift),
      tryPanel(card),
    );
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
    storeKey(input.value.trim());
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
