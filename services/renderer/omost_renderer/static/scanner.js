// A tolerant, incremental reader of Omost code as it streams in.
//
// It never runs code: it tokenizes the text and collects the keyword arguments of
// `canvas.set_global_description(...)` and `canvas.add_local_description(...)` calls, keeping
// whatever a half-written call already holds, so the sketch can be drawn while the model writes.
// The server's strict parser stays the authority: when the stream ends, its canvas replaces this.

const CALLS = {
  set_global_description: "global",
  add_local_description: "local",
};

/** Return the code part of a model answer: the first fenced block (closed or not), or all. */
export function extractCode(text) {
  const fence = text.indexOf("```");
  if (fence < 0) return text;
  const lineEnd = text.indexOf("\n", fence);
  if (lineEnd < 0) return "";
  const close = text.indexOf("```", lineEnd + 1);
  return close < 0 ? text.slice(lineEnd + 1) : text.slice(lineEnd + 1, close);
}

// A quote closes a string only if what follows could end a value: `,` `)` `]` a newline or a
// comment. This reads Omost's known failure, unescaped inner quotes ('the 'O' sign'), as intended.
function closesString(text, at) {
  for (let i = at + 1; i < text.length; i += 1) {
    const c = text[i];
    if (c === " " || c === "\t") continue;
    return c === "," || c === ")" || c === "]" || c === "\n" || c === "\r" || c === "#";
  }
  return null; // end of input: not known yet
}

function readString(text, start) {
  const quote = text[start];
  let value = "";
  let i = start + 1;
  while (i < text.length) {
    const c = text[i];
    if (c === "\\" && i + 1 < text.length) {
      const next = text[i + 1];
      value += { n: "\n", t: "\t", "\\": "\\", "'": "'", '"': '"' }[next] ?? next;
      i += 2;
      continue;
    }
    if (c === quote) {
      const closes = closesString(text, i);
      if (closes === true) return { type: "str", value, end: i + 1, partial: false };
      if (closes === null) return { type: "str", value, end: text.length, partial: true };
    }
    if (c === "\n") return { type: "str", value, end: i, partial: false };
    value += c;
    i += 1;
  }
  return { type: "str", value, end: text.length, partial: true };
}

/** Split code into tokens: names, strings, numbers and punctuation; comments are skipped. */
export function tokenize(text) {
  const tokens = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (/\s/.test(c)) {
      i += 1;
    } else if (c === "#") {
      const end = text.indexOf("\n", i);
      i = end < 0 ? text.length : end;
    } else if (c === "'" || c === '"') {
      const token = readString(text, i);
      tokens.push(token);
      i = token.end;
    } else if (/[A-Za-z_]/.test(c)) {
      const match = /^[A-Za-z_][A-Za-z0-9_]*/.exec(text.slice(i, i + 64));
      tokens.push({ type: "name", value: match[0], partial: i + match[0].length === text.length });
      i += match[0].length;
    } else if (/[0-9.+-]/.test(c) && /^[+-]?(\d|\.\d)/.test(text.slice(i, i + 3))) {
      const match = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?/.exec(text.slice(i, i + 64));
      tokens.push({
        type: "num",
        value: Number(match[0]),
        partial: i + match[0].length === text.length,
      });
      i += match[0].length;
    } else {
      tokens.push({ type: "punct", value: c });
      i += 1;
    }
  }
  return tokens;
}

// Read one keyword value starting at tokens[i]: a string, a number or a list of strings.
function readValue(tokens, i) {
  const token = tokens[i];
  if (!token) return { value: undefined, next: i, partial: true };
  if (token.type === "str" || token.type === "num") {
    return { value: token.value, next: i + 1, partial: Boolean(token.partial) };
  }
  if (token.type === "punct" && token.value === "[") {
    const items = [];
    let j = i + 1;
    while (j < tokens.length) {
      const t = tokens[j];
      if (t.type === "punct" && t.value === "]") return { value: items, next: j + 1, partial: false };
      if (t.type === "str") items.push(t.value);
      j += 1;
    }
    return { value: items, next: j, partial: true };
  }
  if (token.type === "name") return { value: token.value, next: i + 1, partial: false };
  return { value: undefined, next: i + 1, partial: false };
}

// Read `name=value, ...)` from tokens[i]; stops at the closing parenthesis or the end.
function readArguments(tokens, i) {
  const fields = {};
  const partialFields = new Set();
  let j = i;
  while (j < tokens.length) {
    const t = tokens[j];
    if (t.type === "punct" && t.value === ")") return { fields, partialFields, next: j + 1, complete: true };
    const eq = tokens[j + 1];
    if (t.type === "name" && eq && eq.type === "punct" && eq.value === "=") {
      const { value, next, partial } = readValue(tokens, j + 2);
      if (value !== undefined) fields[t.value] = value;
      if (partial) partialFields.add(t.value);
      j = next;
    } else {
      j += 1;
    }
  }
  return { fields, partialFields, next: j, complete: false };
}

/**
 * Read every canvas call in an answer (or bare code), complete or not.
 *
 * @param {string} text The answer so far.
 * @returns {{global: object|null, locals: object[], complete: boolean}} Fields by keyword name;
 *   each call also carries `complete` (its closing parenthesis was seen) and `partialFields`.
 */
export function scanCanvas(text) {
  const tokens = tokenize(extractCode(text));
  const result = { global: null, locals: [], complete: false };
  let sawEnd = true;
  for (let i = 0; i + 3 < tokens.length; i += 1) {
    const [a, dot, method, paren] = tokens.slice(i, i + 4);
    const kind = method && CALLS[method.value];
    if (a.value !== "canvas" || dot.value !== "." || !kind || paren.value !== "(") continue;
    if (method.partial) continue;
    const call = readArguments(tokens, i + 4);
    const entry = { ...call.fields, complete: call.complete, partialFields: [...call.partialFields] };
    if (kind === "global") result.global = entry;
    else result.locals.push(entry);
    sawEnd = call.complete;
    i = call.next - 1;
  }
  result.complete = result.global !== null && sawEnd;
  return result;
}
