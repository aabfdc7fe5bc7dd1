// How familiar the input looked to the model: its familiarity score against the card's
// threshold, in the model's own words ("this doesn't look like a digit").

import { el } from "./dom.js";
import { fmt } from "./format.js";

// What each model was trained on, as the sentence names it; other models: "its training data".
const WHAT = {
  mnist: "a digit",
  catdog: "a photo of a cat or a dog",
  iris: "an iris flower",
  housing: "a California census block",
};

export function familiarityView(prediction) {
  const familiarity = prediction.familiarity;
  if (!familiarity) return null;
  const what = WHAT[prediction.model] ?? "its training data";
  const { score, threshold, familiar, percentile } = familiarity;
  const headline = familiar ? `This looks like ${what}.` : `This doesn't look like ${what}.`;
  const comparison = familiar ? "at most" : "above";
  const detail = [
    `Familiarity score ${fmt(score)}, ${comparison} the threshold ${fmt(threshold)}`,
    ` (higher is less familiar; ${fmt(percentile, 1)} % of validation inputs score lower).`,
  ].join("");
  const outside = familiarity.features_outside ?? [];
  return el(
    "div",
    {
      class: `familiarity ${familiar ? "familiar" : "unfamiliar"}`,
      role: familiar ? null : "note",
      "data-familiar": String(familiar),
    },
    el("p", { class: "familiarity-headline", text: headline }),
    el("p", { class: "familiarity-detail", text: detail }),
    familiar ? null : el("p", { class: "familiarity-detail", text: "The answer above is a guess." }),
    outside.length
      ? el("p", { class: "familiarity-detail", text: `Outside the training range: ${outside.join(", ")}.` })
      : null,
  );
}
