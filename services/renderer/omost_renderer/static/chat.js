// The chat list: user prompts and assistant answers, summarised as canvases rather than code.

/** Append a message bubble and return it. */
export function addMessage(list, role, text) {
  const hint = list.querySelector(".hint");
  if (hint) hint.remove();
  const item = document.createElement("li");
  item.className = `message ${role}`;
  const body = document.createElement("div");
  body.className = "body";
  body.textContent = text;
  item.append(body);
  list.append(item);
  list.scrollTop = list.scrollHeight;
  return item;
}

/** Show a streaming answer's progress: how many regions are written so far. */
export function showStreaming(item, scan, chars) {
  const body = item.querySelector(".body");
  const regions = scan.locals.length;
  const writing = scan.locals.length && !scan.locals[scan.locals.length - 1].complete;
  const what = !scan.global
    ? "composing the canvas…"
    : regions === 0
      ? "writing the global description…"
      : `${writing ? "writing" : "wrote"} region ${regions - (writing ? 1 : 0)}…`;
  body.textContent = `${what} (${chars} characters)`;
  item.classList.add("streaming");
}

function describeChange(change) {
  if (change.region === "global") return `global: ${change.fields.join(", ")}`;
  const name = (change.after || change.before || {}).description || "";
  const fields = change.fields.length ? ` (${change.fields.join(", ")})` : "";
  return `region ${change.index} ${change.change}${fields}: ${name}`;
}

/** Turn a finished answer into its summary: regions, corrections and what changed. */
export function showAnswer(item, view, omost, changes) {
  item.classList.remove("streaming");
  const body = item.querySelector(".body");
  body.replaceChildren();
  const title = document.createElement("strong");
  title.textContent = view.global.description || "Canvas";
  const count = document.createElement("span");
  count.className = "muted";
  count.textContent = ` — ${view.locals.length} region${view.locals.length === 1 ? "" : "s"}`;
  body.append(title, count);
  const notes = document.createElement("ul");
  notes.className = "notes";
  for (const change of changes) {
    const li = document.createElement("li");
    li.className = `change ${change.change}`;
    li.textContent = describeChange(change);
    notes.append(li);
  }
  for (const fix of (omost && omost.corrections) || []) {
    const li = document.createElement("li");
    li.className = "correction";
    li.textContent = `corrected ${fix.kind}: “${fix.original}” → “${fix.corrected}”`;
    notes.append(li);
  }
  if (omost && omost.retries) {
    const li = document.createElement("li");
    li.className = "correction";
    li.textContent = `the model was asked again ${omost.retries} time(s) for a valid canvas`;
    notes.append(li);
  }
  if (omost && omost.truncated_history) {
    const li = document.createElement("li");
    li.className = "correction";
    const left = omost.messages_left_out;
    li.textContent =
      `older turns were left out to fit the model's context (${left} message${left === 1 ? "" : "s"}); ` +
      "the latest canvas and what followed were kept";
    notes.append(li);
  }
  if (notes.children.length) body.append(notes);
}

/** Turn a bubble into an error message. */
export function showError(item, message) {
  item.classList.remove("streaming");
  item.classList.add("error");
  item.querySelector(".body").textContent = message;
}
