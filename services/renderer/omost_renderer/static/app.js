// The page: chat with the LLM, the canvas drawn live, hand edits checked by the schema, renders.

import {
  apiKey,
  getVocabulary,
  imageSource,
  isKeyError,
  isUp,
  llmModel,
  setApiKey,
  streamChat,
  validateCanvas,
} from "./api.js";
import { addMessage, showAnswer, showError, showStreaming } from "./chat.js";
import { diffCanvases, toCanvas, toView } from "./diff.js";
import { renderRegionForm, showFieldErrors } from "./editor.js";
import { RenderJob, addToGallery, applyParamSchema, readParams, wireRenderForm } from "./render.js";
import { drawRepaintArea, planEdit, repaintMask } from "./repaint.js";
import { extractCode, scanCanvas } from "./scanner.js";
import { drawCanvas, localRect, sortedLocals } from "./sketch.js";

const $ = (id) => document.getElementById(id);
const EDIT_DELAY_MS = 300;
const HEALTH_EVERY_MS = 10000;
const PREVIEW_BOX = 520;

function fenced(code) {
  return `\`\`\`python\n${code}\`\`\``;
}

class App {
  constructor(vocab, model) {
    this.vocab = vocab;
    this.model = model;
    this.messages = []; // the conversation sent back on every turn, as Omost's edits need
    this.view = null; // the current, validated canvas (page shape)
    this.before = null; // the canvas before the latest answer: what changes are shown against
    this.changes = [];
    this.selected = null; // "global", a local's index, or null
    this.valid = false;
    this.abort = null;
    this.editTimer = null;
    this.editSeq = 0;
    this.lastRender = null; // {id, canvas, params} of the latest finished render: what an edit keeps
    this.job = new RenderJob(
      { box: $("job"), status: $("job-status"), progress: $("progress"), preview: $("step-preview"), cancel: $("cancel") },
      {
        onImages: (view, params) => {
          this.lastRender = { id: view.id, canvas: JSON.stringify(params.canvas), params };
          addToGallery($("gallery"), view, params, (image, p) => this.open(image, p));
        },
        onQueued: (job) => this.showEditPlan(job.edit),
        onError: (error) => this.banner(error.message),
        onDone: () => this.updateRenderButton(),
      },
    );
  }

  banner(message) {
    $("banner-text").textContent = message;
    $("banner").hidden = !message;
  }

  // ----- drawing -------------------------------------------------------------------------

  resizePreview() {
    const form = $("render-form");
    const w = Number(form.elements.namedItem("width").value) || 1;
    const h = Number(form.elements.namedItem("height").value) || 1;
    const scale = PREVIEW_BOX / Math.max(w, h);
    $("preview").width = Math.round(w * scale);
    $("preview").height = Math.round(h * scale);
    $("repaint-area").width = $("preview").width;
    $("repaint-area").height = $("preview").height;
    this.redraw();
  }

  redraw(view = this.view) {
    const changes = new Map();
    const removed = [];
    for (const change of this.changes) {
      if (change.region !== "local") continue;
      if (change.change === "removed") removed.push(change.before);
      else changes.set(change.index, change.change);
    }
    drawCanvas($("preview"), this.vocab, view || { global: null, locals: [] }, {
      selected: typeof this.selected === "number" ? this.selected : null,
      changes,
      removed,
    });
    this.renderLegend(view);
  }

  renderLegend(view) {
    const legend = $("legend");
    legend.replaceChildren();
    if (!view || !view.global) return;
    const kinds = new Map(this.changes.map((c) => [c.region === "global" ? "global" : c.index, c.change]));
    const entry = (key, text, colorName) => {
      const li = document.createElement("li");
      li.dataset.region = key;
      li.className = this.selected === key ? "selected" : "";
      const swatch = document.createElement("span");
      swatch.className = "swatch";
      const rgb = this.vocab.colors[String(colorName || "").toLowerCase()];
      if (rgb) swatch.style.background = `rgb(${rgb.join(",")})`;
      const label = document.createElement("span");
      label.textContent = text;
      li.append(swatch, label);
      const kind = kinds.get(key);
      if (kind && kind !== "removed") {
        const badge = document.createElement("span");
        badge.className = `badge ${kind}`;
        badge.textContent = kind;
        li.append(badge);
      }
      li.onclick = () => this.select(key);
      legend.append(li);
    };
    entry("global", `global: ${view.global.description || ""}`, view.global.HTML_web_color_name);
    view.locals.forEach((local, i) => entry(i, `${i}: ${local.description || ""}`, local.HTML_web_color_name));
  }

  renderChanges() {
    const box = $("changes");
    box.replaceChildren();
    box.hidden = this.changes.length === 0;
    if (box.hidden) return;
    const title = document.createElement("strong");
    title.textContent = "Changed since the previous canvas:";
    box.append(title);
    const list = document.createElement("ul");
    for (const change of this.changes) {
      const li = document.createElement("li");
      li.className = `change ${change.change}`;
      const where = change.region === "global" ? "global" : `region ${change.index}`;
      const what = change.fields.length ? `: ${change.fields.join(", ")}` : "";
      const name = (change.after || change.before || {}).description || "";
      li.textContent = `${where} ${change.change}${what} — ${name}`;
      if (change.change === "modified") {
        for (const field of change.fields.slice(0, 3)) {
          const detail = document.createElement("div");
          detail.className = "detail";
          detail.textContent = `${field}: ${short(change.before[field])} → ${short(change.after[field])}`;
          li.append(detail);
        }
      }
      list.append(li);
    }
    box.append(list);
  }

  // ----- the canvas ----------------------------------------------------------------------

  /** Make `canvas` (server JSON, validated) the current canvas, with its printed code. */
  commit(canvas, code, { newTurn = false } = {}) {
    if (newTurn) this.before = this.view;
    this.view = toView(canvas);
    this.valid = true;
    this.changes = diffCanvases(this.before, this.view);
    $("code").value = code;
    $("code-status").textContent = "";
    $("validation").replaceChildren();
    $("canvas-state").textContent = `${this.view.locals.length} regions, valid`;
    document.body.dataset.canvas = "valid";
    if (typeof this.selected === "number" && this.selected >= this.view.locals.length) this.selected = null;
    this.renderChanges();
    this.redraw();
    this.updateRenderButton();
  }

  select(key) {
    this.selected = key;
    const region = key === "global"
      ? { fields: this.view.global }
      : typeof key === "number" ? { index: key, fields: this.view.locals[key] } : null;
    renderRegionForm($("region-form"), this.vocab, region, key === "global", (fields) => this.edit(fields));
    $("remove-region").disabled = typeof key !== "number";
    this.redraw();
  }

  /** A hand edit of the selected region: draw it at once, check it on the server shortly. */
  edit(fields) {
    const draft = { global: { ...this.view.global }, locals: this.view.locals.map((l) => ({ ...l })) };
    if (this.selected === "global") Object.assign(draft.global, fields);
    else Object.assign(draft.locals[this.selected], fields);
    this.redraw(draft);
    this.valid = false;
    this.updateRenderButton();
    clearTimeout(this.editTimer);
    this.editTimer = setTimeout(() => this.check({ canvas: toCanvas(draft) }, draft), EDIT_DELAY_MS);
  }

  /** Validate a draft (JSON or code) and commit it, or show the errors with their fields. */
  async check(body, draft = null) {
    const seq = ++this.editSeq;
    $("canvas-state").textContent = "checking…";
    let result;
    try {
      result = await validateCanvas(body);
    } catch (error) {
      this.banner(error.message);
      return false;
    }
    if (seq !== this.editSeq) return false; // a newer edit is on its way
    if (result.valid) {
      this.commit(result.canvas, result.code);
      this.rememberEdit(result.code);
      if (result.corrections.length) {
        $("code-status").textContent = result.corrections
          .map((c) => `corrected ${c.kind} “${c.original}” → “${c.corrected}”`)
          .join("; ");
      }
      if (typeof this.selected === "number" || this.selected === "global") {
        if (body.code !== undefined) this.select(this.selected);
        else showFieldErrors($("region-form"), [], this.selected, () => {});
      }
      return true;
    }
    this.valid = false;
    document.body.dataset.canvas = "invalid";
    $("canvas-state").textContent = "invalid: see the errors below";
    $("code-status").textContent = "";
    this.showErrors(result.errors);
    if (draft) this.redraw(draft);
    this.updateRenderButton();
    return false;
  }

  showErrors(errors) {
    const list = $("validation");
    list.replaceChildren();
    for (const error of errors) {
      const li = document.createElement("li");
      const where = error.line ? `line ${error.line}, column ${error.column}` : error.path;
      li.textContent = `${where}: ${error.message}${error.suggestion ? ` (did you mean “${error.suggestion}”?)` : ""}`;
      list.append(li);
    }
    if (this.selected !== null) {
      showFieldErrors($("region-form"), errors, this.selected, (field, value) => {
        const input = $("region-form").elements.namedItem(field);
        input.value = value;
        input.dispatchEvent(new Event("change", { bubbles: true }));
      });
    }
  }

  /** Hand edits become the canvas the next chat turn edits: the last answer is replaced. */
  rememberEdit(code) {
    const last = this.messages.findLastIndex((m) => m.role === "assistant");
    if (last >= 0) this.messages[last] = { role: "assistant", content: fenced(code) };
    else this.messages.push({ role: "user", content: "Here is my canvas." }, { role: "assistant", content: fenced(code) });
  }

  addRegion() {
    if (!this.view) return;
    const template = {
      location: "in the center", offset: "no offset", area: "a small square area",
      distance_to_viewer: 1.0, description: "A new object.", detailed_descriptions: [],
      tags: "", atmosphere: "", style: "", quality_meta: "", HTML_web_color_name: "white",
    };
    const draft = { global: this.view.global, locals: [...this.view.locals, template] };
    this.check({ canvas: toCanvas(draft) }, draft).then((ok) => ok && this.select(this.view.locals.length - 1));
  }

  removeRegion() {
    if (typeof this.selected !== "number") return;
    const draft = { global: this.view.global, locals: this.view.locals.filter((_, i) => i !== this.selected) };
    this.selected = null;
    this.check({ canvas: toCanvas(draft) }, draft).then(() => this.select(null));
  }

  pick(event) {
    if (!this.view) return;
    const rect = $("preview").getBoundingClientRect();
    const n = this.vocab.grid_size;
    const gx = ((event.clientX - rect.left) / rect.width) * n;
    const gy = ((event.clientY - rect.top) / rect.height) * n;
    // Nearest first: it is drawn last, on top.
    for (const [index, local] of sortedLocals(this.view.locals).reverse()) {
      const box = localRect(this.vocab, local);
      if (box && gy >= box[0] && gy < box[1] && gx >= box[2] && gx < box[3]) return this.select(index);
    }
    return this.select("global");
  }

  // ----- chat ------------------------------------------------------------------------------

  async send(prompt) {
    const list = $("messages");
    addMessage(list, "user", prompt);
    const bubble = addMessage(list, "assistant", "…");
    const seedText = $("llm-seed").value;
    const messages = [...this.messages, { role: "user", content: prompt }];
    this.abort = new AbortController();
    this.setBusy(true);
    this.banner("");
    $("canvas-state").textContent = "the model is writing the canvas…";
    const previous = this.changes;
    this.changes = [];
    let latest = "";
    let frame = null;
    try {
      const { text, omost } = await streamChat({
        model: this.model,
        messages,
        seed: seedText === "" ? null : Number(seedText),
        signal: this.abort.signal,
        onText: (sofar) => {
          // Pieces arrive faster than frames: draw at most once per frame, the latest text.
          latest = sofar;
          if (frame === null) {
            frame = requestAnimationFrame(() => {
              frame = null;
              const scan = scanCanvas(latest);
              showStreaming(bubble, scan, latest.length);
              if (scan.global) this.redraw(scan);
            });
          }
        },
      });
      if (!omost) throw new Error("The answer held no valid canvas.");
      this.messages = [...messages, { role: "assistant", content: text }];
      const printed = await validateCanvas({ canvas: omost.canvas });
      this.commit(omost.canvas, printed.code || extractCode(text), { newTurn: true });
      showAnswer(bubble, this.view, omost, this.changes);
      this.select(this.selected);
    } catch (error) {
      this.changes = previous;
      $("canvas-state").textContent = this.view ? `${this.view.locals.length} regions, valid` : "no canvas yet";
      const message = error.name === "AbortError" ? "Stopped." : error.message;
      showError(bubble, message);
      if (error.name !== "AbortError") this.banner(message);
      this.redraw();
    } finally {
      if (frame !== null) cancelAnimationFrame(frame);
      this.abort = null;
      this.setBusy(false);
    }
  }

  setBusy(busy) {
    $("send").disabled = busy;
    $("stop").hidden = !busy;
    document.body.dataset.chat = busy ? "streaming" : "idle";
    this.updateRenderButton();
  }

  reset() {
    if (this.abort) this.abort.abort();
    this.messages = [];
    this.view = null;
    this.lastRender = null; // a new conversation renders a new picture
    this.before = null;
    this.changes = [];
    this.valid = false;
    $("messages").replaceChildren();
    $("code").value = "";
    $("validation").replaceChildren();
    $("canvas-state").textContent = "no canvas yet";
    this.renderChanges();
    this.select(null);
    this.updateRenderButton();
  }

  // ----- rendering -------------------------------------------------------------------------

  /** Whether the canvas differs from the last render's: then "render the changes" is the default. */
  editable() {
    return Boolean(this.view && this.lastRender && JSON.stringify(toCanvas(this.view)) !== this.lastRender.canvas);
  }

  updateRenderButton() {
    const running = this.job.events !== null && this.job.events !== undefined;
    const edit = this.editable();
    $("render").disabled = !this.view || !this.valid || running;
    $("render").textContent = edit ? "Render the changes" : "Render";
    $("render").title = !this.view ? "Compose a canvas first" : !this.valid ? "Fix the canvas first"
      : edit ? "Repaint only the changed regions; the rest of the last image stays" : "";
    $("full-render").hidden = !edit;
    $("full-render").disabled = $("render").disabled;
    this.showRepaintArea(edit && this.valid && !this.abort);
  }

  /**
   * Before the click, show what "Render the changes" will do: the area it repaints over the
   * sketch, or in words why it will be a full render. This is the page's own copy of the
   * server's rules; the server's plan and mask stay authoritative (the job box shows them).
   */
  showRepaintArea(show) {
    const area = $("repaint-area");
    const note = $("repaint-note");
    area.hidden = true;
    note.hidden = !show;
    if (!show) return;
    const params = readParams($("render-form"));
    const base = this.lastRender;
    const changes = diffCanvases(toView(JSON.parse(base.canvas)), this.view);
    const plan = planEdit(this.vocab, changes, base.params, params);
    if (plan.mode === "full") {
      note.textContent = `Render the changes will be a full render: ${plan.reason}.`;
      return;
    }
    drawRepaintArea(area, repaintMask(this.vocab, plan.rects, params.width, params.height));
    area.hidden = false;
    note.textContent = "Render the changes repaints the tinted area; the rest of the last image stays.";
  }

  /** Render the canvas: only its changes over the last render unless `full` (or nothing to keep). */
  render({ full = false } = {}) {
    const form = $("render-form");
    if (!form.reportValidity()) return;
    this.banner("");
    const body = { canvas: toCanvas(this.view), ...readParams(form) };
    if (!full && this.editable()) body.edit_of = { render_id: this.lastRender.id, image: 0 };
    this.showEditPlan(null);
    this.job.start(body).then(() => this.updateRenderButton());
    this.updateRenderButton();
  }

  /** Show how an edit renders (the server's diff and plan) and its repaint area over the sketch. */
  showEditPlan(edit) {
    $("edit-plan").hidden = !edit;
    $("edit-mask").hidden = true;
    if (!edit) return;
    $("edit-reason").textContent = edit.mode === "region"
      ? `Rendering the changes: ${edit.reason}.` : `Full render: ${edit.reason}.`;
    if (edit.mask_url) {
      imageSource(edit.mask_url).then((src) => {
        $("edit-mask").src = src;
        $("edit-mask").hidden = false;
      }, () => {});
    }
  }

  open(image, params) {
    $("viewer-image").src = image.src || image.url;
    $("viewer-caption").textContent = `seed ${image.seed} · ${params.width}×${params.height} · ${params.steps} steps · CFG ${params.cfg}`;
    $("viewer").showModal();
  }

  async watchHealth() {
    const set = (id, up, name) => {
      $(id).dataset.state = up ? "up" : "down";
      $(id).textContent = `${name} ${up ? "ready" : "down"}`;
    };
    set("llm-status", await isUp("/llm/ready"), "LLM");
    set("renderer-status", await isUp("/ready"), "Renderer");
  }
}

function short(value) {
  const text = Array.isArray(value) ? value.join(" ") : String(value ?? "");
  return text.length > 60 ? `${text.slice(0, 59)}…` : text;
}

function wire(app) {
  $("chat-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const prompt = $("prompt").value.trim();
    if (!prompt || app.abort) return;
    $("prompt").value = "";
    app.send(prompt);
  });
  $("prompt").addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey) {
      event.preventDefault();
      $("chat-form").requestSubmit();
    }
  });
  $("stop").onclick = () => app.abort && app.abort.abort();
  $("new-chat").onclick = () => app.reset();
  $("banner-close").onclick = () => app.banner("");
  $("preview").addEventListener("click", (event) => app.pick(event));
  $("add-region").onclick = () => app.addRegion();
  $("remove-region").onclick = () => app.removeRegion();
  $("apply-code").onclick = () => app.check({ code: $("code").value });
  for (const tab of document.querySelectorAll("[data-tab]")) {
    tab.onclick = () => {
      for (const other of document.querySelectorAll("[data-tab]")) {
        other.setAttribute("aria-selected", String(other === tab));
        $(`tab-${other.dataset.tab}`).hidden = other !== tab;
      }
    };
  }
  const form = $("render-form");
  wireRenderForm(form);
  form.addEventListener("input", (event) => {
    if (event.target.name === "width" || event.target.name === "height") app.resizePreview();
    app.updateRenderButton(); // the size, hires and mask mode decide whether an edit renders in full
  });
  form.addEventListener("change", () => app.updateRenderButton());
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    app.render();
  });
  $("full-render").addEventListener("click", () => app.render({ full: true }));
}

/** Show the key dialog with `message`; resolves once a key is entered (kept for this tab). */
function askForKey(message) {
  return new Promise((resolve) => {
    $("key-message").textContent = message;
    $("key-input").value = "";
    $("key-form").onsubmit = (event) => {
      event.preventDefault();
      const key = $("key-input").value.trim();
      if (!key) return;
      setApiKey(key);
      $("key-dialog").close();
      $("key-button").hidden = false;
      resolve();
    };
    if (!$("key-dialog").open) $("key-dialog").showModal();
    $("key-input").focus();
  });
}

// Load the vocabulary, asking for an API key while the service answers 401.
async function loadVocabulary() {
  for (;;) {
    try {
      return await getVocabulary();
    } catch (error) {
      if (!isKeyError(error)) throw error;
      await askForKey(error.message);
    }
  }
}

async function main() {
  let vocab;
  $("key-button").hidden = !apiKey();
  $("key-button").onclick = () => askForKey("Enter the API key to use from now on.");
  try {
    vocab = await loadVocabulary();
  } catch (error) {
    $("banner-text").textContent = `The page cannot start: ${error.message}`;
    $("banner").hidden = false;
    return;
  }
  const app = new App(vocab, await llmModel());
  applyParamSchema($("render-form"), vocab.render_params);
  wire(app);
  app.resizePreview();
  app.select(null);
  app.watchHealth();
  setInterval(() => app.watchHealth(), HEALTH_EVERY_MS);
  document.body.dataset.ready = "true";
}

main();
