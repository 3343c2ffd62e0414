// What "Render the changes" will repaint, shown before the click.
//
// This mirrors the server's plan (`omost_schema.repaint`, `omost_renderer.edits.plans`) so the page can
// show the repaint area at once; the server's plan and mask (`edit` of the job, `mask_url`) stay
// authoritative, and the job box shows them once the edit is queued.

import { localRect, pixelRect } from "./sketch.js";

// omost_schema.repaint: REPAINT_MARGIN_PX, REPAINT_FEATHER_PX, LATENT_CELL_PX.
export const REPAINT_MARGIN_PX = 32;
export const REPAINT_FEATHER_PX = 32;
export const LATENT_CELL_PX = 8;
// The tint of the server's overlay PNG (`_OVERLAY_RGB`, `_OVERLAY_ALPHA`).
const TINT = [255, 40, 40];
const TINT_ALPHA = 0.55;

/**
 * How an edit of the last render would be drawn: in full (with the server's reason) or by
 * repainting the old and new boxes of the changed local regions.
 *
 * @param {object} vocab The vocabulary from the server (the boxes of the names).
 * @param {object[]} changes `diffCanvases(lastRenderCanvas, canvas)` (page shape).
 * @param {object} before The last render's parameters.
 * @param {object} after The parameters the edit would send.
 * @returns {{mode: "full", reason: string} | {mode: "region", rects: number[][]}}
 */
export function planEdit(vocab, changes, before, after) {
  const glob = changes.find((c) => c.region === "global");
  if (glob) {
    return { mode: "full", reason: `the global description changed (${glob.fields.join(", ")}): every pixel depends on it` };
  }
  if (before.width !== after.width || before.height !== after.height) {
    return { mode: "full", reason: `the size changed from ${before.width}x${before.height} to ${after.width}x${after.height}` };
  }
  const hires = (p) => (p.hires_scale === undefined ? null : p.hires_scale);
  if (hires(before) !== hires(after)) {
    return { mode: "full", reason: `the hires scale changed from ${hires(before) ?? "none"} to ${hires(after) ?? "none"}` };
  }
  const maskMode = (p) => p.mask_mode || "omost";
  if (maskMode(before) !== maskMode(after)) {
    return { mode: "full", reason: `the mask mode changed from ${maskMode(before)} to ${maskMode(after)}` };
  }
  const rects = [];
  for (const change of changes) {
    for (const local of [change.before, change.after]) {
      const rect = local && localRect(vocab, local);
      if (rect) rects.push(rect);
    }
  }
  return { mode: "region", rects };
}

/**
 * The repaint mask of grid boxes, as `repaint_mask` computes it: one value per `cellPx` cell from
 * the Chebyshev distance `d` of its centre to the nearest box (in pixels), 1 for `d <= margin`,
 * falling linearly to 0 at `margin + feather`.
 *
 * @returns {{rows: number, cols: number, values: Float32Array}} Row-major values in [0, 1].
 */
export function repaintMask(vocab, rects, width, height, cellPx = LATENT_CELL_PX) {
  const rows = Math.floor(height / cellPx);
  const cols = Math.floor(width / cellPx);
  const values = new Float32Array(rows * cols);
  const boxes = rects.map((rect) => pixelRect(vocab, rect, width, height));
  for (let r = 0; r < rows; r += 1) {
    const cy = (r + 0.5) * cellPx;
    for (let c = 0; c < cols; c += 1) {
      const cx = (c + 0.5) * cellPx;
      let value = 0;
      for (const [top, bottom, left, right] of boxes) {
        const dy = Math.max(top - cy, cy - bottom, 0);
        const dx = Math.max(left - cx, cx - right, 0);
        const d = Math.max(dy, dx) - REPAINT_MARGIN_PX;
        value = Math.max(value, Math.min(1, Math.max(0, 1 - d / REPAINT_FEATHER_PX)));
      }
      values[r * cols + c] = value;
    }
  }
  return { rows, cols, values };
}

/** Tint `mask` over a transparent <canvas> (cells stretched to it, as the server's overlay). */
export function drawRepaintArea(element, mask) {
  const ctx = element.getContext("2d");
  ctx.clearRect(0, 0, element.width, element.height);
  if (!mask || !mask.rows || !mask.cols) return;
  const image = new ImageData(mask.cols, mask.rows);
  mask.values.forEach((value, p) => {
    image.data.set(TINT, p * 4);
    image.data[p * 4 + 3] = Math.round(value * TINT_ALPHA * 255);
  });
  const cells = new OffscreenCanvas(mask.cols, mask.rows);
  cells.getContext("2d").putImageData(image, 0, 0);
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(cells, 0, 0, element.width, element.height);
}
