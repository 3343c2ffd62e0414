// The region form: edit one region's fields by hand; the schema check runs on the server.

import { GLOBAL_FIELDS, LOCAL_FIELDS } from "./diff.js";

const LIST_FIELDS = new Set(["detailed_descriptions"]);
const LONG_FIELDS = new Set(["description", "tags", "atmosphere", "style", "quality_meta"]);
const LABELS = {
  HTML_web_color_name: "Colour",
  distance_to_viewer: "Distance to viewer",
  detailed_descriptions: "Detailed descriptions (one per line)",
  quality_meta: "Quality",
};

function labelOf(name) {
  return LABELS[name] || name.charAt(0).toUpperCase() + name.slice(1).replace(/_/g, " ");
}

function options(select, names, current, vocab) {
  const known = names.includes(current);
  if (!known && current !== undefined) names = [current, ...names];
  for (const name of names) {
    const option = document.createElement("option");
    option.value = name;
    option.textContent = name;
    if (vocab && vocab.colors[name]) {
      const [r, g, b] = vocab.colors[name];
      option.style.background = `rgb(${r},${g},${b})`;
      option.style.color = r * 0.3 + g * 0.59 + b * 0.11 > 140 ? "#000" : "#fff";
    }
    option.selected = name === current;
    select.append(option);
  }
}

function inputFor(name, value, vocab) {
  const choices = {
    location: vocab.locations,
    offset: vocab.offsets,
    area: vocab.areas,
    HTML_web_color_name: Object.keys(vocab.colors),
  }[name];
  let input;
  if (choices) {
    input = document.createElement("select");
    options(input, choices, value, name === "HTML_web_color_name" ? vocab : null);
  } else if (name === "distance_to_viewer") {
    input = document.createElement("input");
    input.type = "number";
    input.step = "any";
    input.value = value ?? "";
  } else if (LIST_FIELDS.has(name) || LONG_FIELDS.has(name)) {
    input = document.createElement("textarea");
    input.rows = LIST_FIELDS.has(name) ? 4 : 2;
    input.value = LIST_FIELDS.has(name) ? (value || []).join("\n") : value ?? "";
  } else {
    input = document.createElement("input");
    input.value = value ?? "";
  }
  input.name = name;
  return input;
}

/** Read a field's value back from its input, in the canvas's types. */
function valueOf(input) {
  if (LIST_FIELDS.has(input.name)) {
    return input.value.split("\n").map((line) => line.trim()).filter(Boolean);
  }
  if (input.name === "distance_to_viewer") {
    return input.value === "" ? null : Number(input.value);
  }
  return input.value;
}

/**
 * Fill `form` with the fields of the selected region and call `onEdit(fields)` on every change.
 *
 * @param {HTMLFormElement} form
 * @param {object} vocab
 * @param {object|null} region The region's fields, or null for no selection.
 * @param {boolean} isGlobal Whether it is the global description.
 * @param {(fields: object) => void} onEdit
 */
export function renderRegionForm(form, vocab, region, isGlobal, onEdit) {
  form.replaceChildren();
  if (!region) {
    const hint = document.createElement("p");
    hint.className = "muted";
    hint.textContent = "Select a region in the sketch or the list to edit it.";
    form.append(hint);
    return;
  }
  const title = document.createElement("p");
  title.className = "form-title";
  title.textContent = isGlobal ? "Global description" : `Region ${region.index}`;
  form.append(title);
  for (const name of isGlobal ? GLOBAL_FIELDS : LOCAL_FIELDS) {
    const label = document.createElement("label");
    label.className = LONG_FIELDS.has(name) || LIST_FIELDS.has(name) ? "wide" : "";
    label.dataset.field = name;
    label.append(labelOf(name), inputFor(name, region.fields[name], vocab));
    const error = document.createElement("span");
    error.className = "field-error";
    label.append(error);
    form.append(label);
  }
  const emit = () => {
    const fields = {};
    for (const input of form.querySelectorAll("[name]")) fields[input.name] = valueOf(input);
    onEdit(fields);
  };
  form.oninput = emit;
  form.onchange = emit;
}

/** Show the server's field errors (paths like `local_descriptions.2.area`) next to the inputs. */
export function showFieldErrors(form, errors, selected, onSuggestion) {
  for (const span of form.querySelectorAll(".field-error")) span.replaceChildren();
  const prefix = selected === "global" ? "global_description." : `local_descriptions.${selected}.`;
  for (const error of errors) {
    if (!error.path.startsWith(prefix)) continue;
    const field = error.path.slice(prefix.length).split(".")[0];
    const span = form.querySelector(`[data-field="${field}"] .field-error`);
    if (!span) continue;
    span.append(error.message);
    if (error.suggestion) {
      const fix = document.createElement("button");
      fix.type = "button";
      fix.className = "link";
      fix.textContent = `use “${error.suggestion}”`;
      fix.onclick = () => onSuggestion(field, error.suggestion);
      span.append(" ", fix);
    }
  }
}
