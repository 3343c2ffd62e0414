// The colour sketch and the labelled boxes of a canvas, drawn exactly as the schema defines them.
//
// Names, boxes, colours and the blend weight come from `GET /v1/schema/vocabulary`, generated from
// omost_schema, so this file holds the drawing only, never a copy of the tables.

/** Return the 90x90 box `[top, bottom, left, right]` of a local, or null if a name is unknown. */
export function localRect(vocab, local) {
  const byOffset = vocab.boxes[local.location];
  const byArea = byOffset && byOffset[local.offset];
  return (byArea && byArea[local.area]) || null;
}

/** Return the RGB of a colour name (lower-cased, as Omost reads it), or null. */
export function colorOf(vocab, name) {
  if (typeof name !== "string") return null;
  return vocab.colors[name.toLowerCase()] || null;
}

/** Return `[programIndex, local]` pairs, farthest first; ties keep program order (stable sort). */
export function sortedLocals(locals) {
  const pairs = locals.map((local, index) => [index, local]);
  const distance = (local) =>
    typeof local.distance_to_viewer === "number" ? local.distance_to_viewer : 0;
  return pairs.sort((a, b) => distance(b[1]) - distance(a[1]));
}

/**
 * Compute the 90x90 colour sketch (RGB bytes, row-major) as omost_schema's process() does.
 *
 * Arithmetic is numpy's in Omost, so the bytes match the server's sketch exactly: the sketch is
 * stored as float32, each blend adds the colour term in double (weight times a byte) to the
 * float32 product of the rest weight and the pixel, and stores the sum as float32. Locals whose
 * box or colour is not known yet (still streaming) are skipped.
 */
export function sketchPixels(vocab, canvas) {
  const n = vocab.grid_size;
  const f = Math.fround;
  const weight = vocab.sketch_color_weight;
  const rest = f(1 - vocab.sketch_color_weight);
  const pixels = new Float32Array(n * n * 3);
  const base = (canvas.global && colorOf(vocab, canvas.global.HTML_web_color_name)) || [0, 0, 0];
  for (let p = 0; p < n * n; p += 1) pixels.set(base, p * 3);
  for (const [, local] of sortedLocals(canvas.locals || [])) {
    const rect = localRect(vocab, local);
    const color = colorOf(vocab, local.HTML_web_color_name);
    if (!rect || !color) continue;
    const [top, bottom, left, right] = rect;
    for (let y = top; y < bottom; y += 1) {
      for (let x = left; x < right; x += 1) {
        for (let c = 0; c < 3; c += 1) {
          const k = (y * n + x) * 3 + c;
          pixels[k] = f(weight * color[c] + f(rest * pixels[k]));
        }
      }
    }
  }
  const bytes = new Uint8Array(n * n * 3);
  for (let k = 0; k < bytes.length; k += 1) bytes[k] = Math.trunc(Math.min(255, Math.max(0, pixels[k])));
  return bytes;
}

/** Scale a grid box to pixels as omost_schema's pixel_rect does (round half to even). */
export function pixelRect(vocab, rect, width, height) {
  const n = vocab.grid_size;
  const round = (v) => {
    const r = Math.round(v);
    return Math.abs(v % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  };
  const [top, bottom, left, right] = rect;
  return [round((top * height) / n), round((bottom * height) / n), round((left * width) / n), round((right * width) / n)];
}

function label(local, index) {
  const text = String(local.description || "").replace(/^[,. ]+|[,. ]+$/g, "");
  return `${index}: ${text.length > 40 ? `${text.slice(0, 39)}…` : text}`;
}

const CHANGE_COLORS = { added: "#3ddc84", modified: "#ffb300", removed: "#ff5252" };

/**
 * Draw a canvas into a <canvas> element: the sketch stretched to the element, then every box.
 *
 * @param {HTMLCanvasElement} element Target; its width and height set the drawing size.
 * @param {object} vocab The vocabulary from the server.
 * @param {{global: object|null, locals: object[]}} canvas Fields by keyword name.
 * @param {{selected?: number|null, changes?: Map<number, string>, removed?: object[]}} options
 */
export function drawCanvas(element, vocab, canvas, options = {}) {
  const ctx = element.getContext("2d");
  const { width, height } = element;
  const n = vocab.grid_size;
  const bytes = sketchPixels(vocab, canvas);
  const image = new ImageData(n, n);
  for (let p = 0; p < n * n; p += 1) {
    image.data.set(bytes.subarray(p * 3, p * 3 + 3), p * 4);
    image.data[p * 4 + 3] = 255;
  }
  const grid = new OffscreenCanvas(n, n);
  grid.getContext("2d").putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.clearRect(0, 0, width, height);
  ctx.drawImage(grid, 0, 0, width, height);
  if (!canvas.global) {
    ctx.fillStyle = "rgba(20, 22, 28, 0.85)";
    ctx.fillRect(0, 0, width, height);
  }
  const changes = options.changes || new Map();
  for (const removed of options.removed || []) {
    const rect = localRect(vocab, removed);
    if (rect) drawBox(ctx, pixelRect(vocab, rect, width, height), "removed", `removed: ${removed.description || ""}`, false);
  }
  ctx.font = "12px system-ui, sans-serif";
  for (const [index, local] of sortedLocals(canvas.locals || [])) {
    const rect = localRect(vocab, local);
    if (!rect) continue;
    const box = pixelRect(vocab, rect, width, height);
    const state = changes.get(index) || (local.complete === false ? "streaming" : "plain");
    drawBox(ctx, box, state, label(local, index), options.selected === index);
  }
}

function drawBox(ctx, [top, bottom, left, right], state, text, selected) {
  ctx.save();
  ctx.lineWidth = selected ? 4 : 2;
  ctx.strokeStyle = CHANGE_COLORS[state] || (selected ? "#4fc3f7" : "rgba(255,255,255,0.9)");
  if (state === "streaming" || state === "removed") ctx.setLineDash([6, 4]);
  ctx.strokeRect(left + 1, top + 1, right - left - 2, bottom - top - 2);
  ctx.setLineDash([]);
  ctx.font = "12px system-ui, sans-serif";
  const w = ctx.measureText(text).width + 8;
  ctx.fillStyle = "rgba(0,0,0,0.7)";
  ctx.fillRect(left + 3, top + 3, Math.min(w, right - left - 6), 17);
  ctx.beginPath();
  ctx.rect(left + 3, top + 3, right - left - 6, 17);
  ctx.clip();
  ctx.fillStyle = "#fff";
  ctx.fillText(text, left + 7, top + 15);
  ctx.restore();
}
