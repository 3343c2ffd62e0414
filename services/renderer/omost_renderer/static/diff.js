// Canvases in the page's shape, and what changed between two of them.
//
// The diff mirrors the shared one (`omost_schema.diff`, which the LLM service reports as
// `changed_regions` and the renderer plans edits with): locals matched by position, the same
// field lists, the same aspects. The page shows it field by field; what an edit repaints is the
// server's plan (`edit` of the render job), computed with the shared diff.

export const GLOBAL_FIELDS = ["description", "detailed_descriptions", "tags", "HTML_web_color_name"];
export const LOCAL_FIELDS = [
  "location",
  "offset",
  "area",
  "distance_to_viewer",
  "description",
  "detailed_descriptions",
  "tags",
  "atmosphere",
  "style",
  "quality_meta",
  "HTML_web_color_name",
];

/** What about a local region a field is (`box`, `color`, `distance`; the rest is `text`). */
const ASPECT_OF = {
  location: "box",
  offset: "box",
  area: "box",
  HTML_web_color_name: "color",
  distance_to_viewer: "distance",
};
const ASPECTS = ["box", "color", "text", "distance"];

/** The aspects of a list of changed local fields, in the shared diff's order. */
export function aspectsOf(fields) {
  const found = new Set(fields.map((name) => ASPECT_OF[name] || "text"));
  return ASPECTS.filter((aspect) => found.has(aspect));
}

function pick(fields, names) {
  const out = {};
  for (const name of names) if (fields[name] !== undefined) out[name] = fields[name];
  return out;
}

/** Turn a server canvas (`global_description`, `local_descriptions`) into the page's shape. */
export function toView(canvas) {
  return {
    global: { ...canvas.global_description, complete: true },
    locals: (canvas.local_descriptions || []).map((local) => ({ ...local, complete: true })),
  };
}

/** Turn the page's shape back into canvas JSON for the server (only the schema's fields). */
export function toCanvas(view) {
  return {
    global_description: pick(view.global || {}, GLOBAL_FIELDS),
    local_descriptions: (view.locals || []).map((local) => pick(local, LOCAL_FIELDS)),
  };
}

function same(a, b) {
  return JSON.stringify(a) === JSON.stringify(b);
}

function changedFields(before, after, names) {
  return names.filter((name) => !same(before[name], after[name]));
}

/**
 * List what changed from `before` to `after` (page shape), locals matched by position as the
 * LLM service does, with the names of the fields that differ.
 *
 * @returns {{region: string, index: number|null, change: string, fields: string[], aspects?: string[], before: object|null, after: object|null}[]}
 */
export function diffCanvases(before, after) {
  const changes = [];
  if (!before) return changes;
  const g = changedFields(before.global || {}, after.global || {}, GLOBAL_FIELDS);
  if (g.length) {
    changes.push({ region: "global", index: null, change: "modified", fields: g, before: before.global, after: after.global });
  }
  const old = before.locals || [];
  const now = after.locals || [];
  for (let i = 0; i < Math.max(old.length, now.length); i += 1) {
    if (i >= old.length) {
      changes.push({ region: "local", index: i, change: "added", fields: [], before: null, after: now[i] });
    } else if (i >= now.length) {
      changes.push({ region: "local", index: i, change: "removed", fields: [], before: old[i], after: null });
    } else {
      const fields = changedFields(old[i], now[i], LOCAL_FIELDS);
      if (fields.length) {
        changes.push({
          region: "local", index: i, change: "modified", fields, aspects: aspectsOf(fields),
          before: old[i], after: now[i],
        });
      }
    }
  }
  return changes;
}
