// The render panel: parameters, a job with progress and step previews, cancel, and the gallery.

import {
  ApiError,
  cancelRender,
  getRender,
  imageSource,
  previewSource,
  renderEvents,
  submitRender,
} from "./api.js";

const NUMBER_FIELDS = ["width", "height", "steps", "cfg", "seed", "num_images"];
const HIRES_FIELDS = ["hires_scale", "hires_steps", "hires_denoise"];
const MAX_SEED = 2 ** 32 - 1;

/** Set each input's default, min and max from the render parameters' JSON schema. */
export function applyParamSchema(form, schema) {
  for (const [name, spec] of Object.entries(schema.properties || {})) {
    const input = form.elements.namedItem(name);
    if (!input) continue;
    const bounds = spec.anyOf ? spec.anyOf.find((s) => s.type === "number") || spec : spec;
    if (bounds.minimum !== undefined) input.min = bounds.minimum;
    if (bounds.exclusiveMinimum !== undefined) input.min = bounds.exclusiveMinimum;
    if (bounds.maximum !== undefined) input.max = bounds.maximum;
    if (spec.default !== undefined && spec.default !== null) input.value = spec.default;
  }
}

/** Read the form into the body of `POST /v1/renders` (without the canvas). */
export function readParams(form) {
  const params = {};
  for (const name of NUMBER_FIELDS) params[name] = Number(form.elements.namedItem(name).value);
  params.negative_prompt = form.elements.namedItem("negative_prompt").value;
  if (form.querySelector("#hires").checked) {
    for (const name of HIRES_FIELDS) params[name] = Number(form.elements.namedItem(name).value);
  }
  if (form.querySelector("#from-sketch").checked) {
    params.sketch_strength = Number(form.elements.namedItem("sketch_strength").value);
  }
  if (form.querySelector("#occlusion").checked) params.mask_mode = "occlusion";
  return params;
}

/** Wire the form's toggles, presets and dice. */
export function wireRenderForm(form) {
  const toggle = (box, names) => {
    const apply = () => {
      for (const name of names) form.elements.namedItem(name).disabled = !box.checked;
    };
    box.addEventListener("change", apply);
    apply();
  };
  toggle(form.querySelector("#hires"), HIRES_FIELDS);
  toggle(form.querySelector("#from-sketch"), ["sketch_strength"]);
  for (const preset of form.querySelectorAll("[data-size]")) {
    preset.addEventListener("click", () => {
      const [w, h] = preset.dataset.size.split("x");
      form.elements.namedItem("width").value = w;
      form.elements.namedItem("height").value = h;
      form.elements.namedItem("width").dispatchEvent(new Event("input", { bubbles: true }));
    });
  }
  form.querySelector("#dice").addEventListener("click", () => {
    const seed = crypto.getRandomValues(new Uint32Array(1))[0] % (MAX_SEED + 1);
    form.elements.namedItem("seed").value = seed;
  });
}

/** One render job on screen: status, progress bar, previews, cancel, then results. */
export class RenderJob {
  /**
   * @param {object} elements `{box, status, progress, preview, cancel}` elements of the panel.
   * @param {{onImages: Function, onError: Function, onDone: Function, onQueued?: Function}} handlers
   */
  constructor(elements, handlers) {
    this.el = elements;
    this.handlers = handlers;
    this.id = null;
    this.events = null;
    this.el.cancel.onclick = () => this.cancel();
  }

  async start(body) {
    this.el.box.hidden = false;
    this.el.preview.hidden = true;
    this.el.progress.value = 0;
    this.el.cancel.disabled = false;
    this.setStatus("submitting…");
    let job;
    try {
      job = await submitRender(body);
    } catch (error) {
      this.finish(`failed: ${error.message}`);
      this.handlers.onError(error);
      return;
    }
    this.id = job.id;
    this.params = body;
    if (this.handlers.onQueued) this.handlers.onQueued(job);
    this.setStatus(this.queuedText(job.queue_position));
    this.follow();
  }

  queuedText(position) {
    return position ? `queued (position ${position})` : "queued";
  }

  setStatus(text) {
    this.el.status.textContent = text;
    this.el.box.dataset.status = text.split(" ")[0];
  }

  // Read the job's events (with fetch, so the API key goes along) until it ends; a dropped
  // stream asks for the job's status, which follows it again if it is still going.
  async follow() {
    const events = new AbortController();
    this.events = events;
    try {
      for await (const event of renderEvents(this.id, events.signal)) {
        if (this.events !== events) return;
        this.onEvent(event);
      }
    } catch (error) {
      if (error.name === "AbortError" || this.events !== events) return;
      if (error instanceof ApiError && error.status) this.handlers.onError(error);
    }
    if (this.events === events) this.settle(null);
  }

  onEvent(event) {
    const data = JSON.parse(event.data);
    if (event.event === "progress") {
      this.el.progress.max = data.total || 1;
      this.el.progress.value = data.step;
      this.setStatus(`step ${data.step} / ${data.total}`);
      if (data.preview) {
        this.el.preview.src = previewSource(data.preview);
        this.el.preview.hidden = false;
      }
    } else if (event.event === "status") {
      if (data.status === "queued") this.setStatus(this.queuedText(data.queue_position));
      else if (data.status === "running") this.setStatus("running");
      else this.settle(data.status);
    } else if (event.event === "error") {
      this.handlers.onError(new ApiError(data.error.message));
      this.settle(null);
    }
  }

  async settle(status) {
    if (!this.events) return;
    this.events.abort();
    this.events = null;
    let view;
    try {
      view = await getRender(this.id);
    } catch (error) {
      this.finish(`failed: ${error.message}`);
      this.handlers.onError(error);
      return;
    }
    const final = view.status || status;
    if (final === "succeeded") {
      this.el.progress.value = this.el.progress.max;
      this.finish("done");
      this.handlers.onImages(view, this.params);
    } else if (final === "canceled") {
      this.finish("canceled");
    } else if (final === "failed") {
      const why = view.error ? view.error.message : "unknown error";
      this.finish(`failed: ${why}`);
      this.handlers.onError(new ApiError(`The render failed: ${why}`));
    } else {
      this.follow(); // still going: the stream dropped, pick it up again
    }
  }

  async cancel() {
    if (!this.id) return;
    this.el.cancel.disabled = true;
    try {
      await cancelRender(this.id);
      this.setStatus("canceling…");
    } catch (error) {
      this.handlers.onError(error);
    }
  }

  finish(text) {
    this.setStatus(text);
    this.el.cancel.disabled = true;
    this.handlers.onDone();
  }
}

/** Add the images of a finished job to the gallery, newest first. */
export function addToGallery(list, view, params, onOpen) {
  for (const image of [...view.images].reverse()) {
    const item = document.createElement("li");
    item.className = "shot";
    const img = document.createElement("img");
    const source = imageSource(image.url);
    img.alt = `Render with seed ${image.seed}`;
    img.loading = "lazy";
    img.onclick = () => onOpen(image, params);
    const caption = document.createElement("div");
    caption.className = "caption";
    const seed = document.createElement("span");
    seed.className = "seed";
    seed.textContent = `seed ${image.seed}`;
    const size = document.createElement("span");
    size.className = "muted";
    size.textContent = `${params.width}×${params.height}, ${params.steps} steps`;
    const download = document.createElement("a");
    download.download = `omost-${view.id}-${image.n}-seed${image.seed}.png`;
    download.textContent = "Download";
    caption.append(seed, size, download);
    item.append(img, caption);
    list.prepend(item);
    // With a key the image is fetched with it and shown from a blob URL.
    source.then(
      (src) => {
        img.src = src;
        download.href = src;
        image.src = src;
      },
      () => {
        img.alt = "The image could not be loaded";
      },
    );
  }
}
