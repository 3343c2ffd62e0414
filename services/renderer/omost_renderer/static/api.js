// Calls to the renderer API and (through its /llm proxy) the LLM service, with clear errors.

/** An error answered by a service, read from OpenAI's envelope `{error: {message, type, code}}`. */
export class ApiError extends Error {
  constructor(message, { status = 0, code = null, param = null, retryAfter = null } = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.code = code;
    this.param = param;
    this.retryAfter = retryAfter;
  }
}

// The API key, kept for this browser tab only (sessionStorage), sent as a Bearer token.
const KEY_STORAGE = "omost.apiKey";

/** The API key entered on this tab, or null. */
export function apiKey() {
  return sessionStorage.getItem(KEY_STORAGE);
}

/** Keep `key` for this tab (an empty key forgets it). */
export function setApiKey(key) {
  if (key) sessionStorage.setItem(KEY_STORAGE, key);
  else sessionStorage.removeItem(KEY_STORAGE);
}

/** The headers that carry the key, merged into `headers`. */
export function withKey(headers = {}) {
  const key = apiKey();
  return key ? { ...headers, authorization: `Bearer ${key}` } : headers;
}

// Turn a failed answer into an ApiError with words a person understands.
async function errorFrom(response, what) {
  let detail = {};
  try {
    detail = (await response.json()).error || {};
  } catch {
    // not JSON: a proxy or a crash in front of the service
  }
  const retryAfter = response.headers.get("retry-after");
  let message = detail.message || `${what} failed (HTTP ${response.status})`;
  if (response.status === 401) {
    message = apiKey()
      ? "The API key was not accepted. Enter a valid key."
      : "This service requires an API key. Enter your key.";
  } else if (response.status === 429 && detail.code === "rate_limit_exceeded") {
    message = `${detail.message || "A limit of your API key is reached"}. Try again in ${retryAfter || "a few"} seconds.`;
  } else if (detail.code === "queue_full") {
    message = `The render queue is full. Try again in ${retryAfter || "a few"} seconds.`;
  } else if (detail.code === "backend_unavailable") {
    message = `The render queue is unavailable right now (${detail.message || "no answer"}). Try again shortly.`;
  } else if (detail.code === "llm_unavailable") {
    message = `The LLM service is not available: ${detail.message || "no answer"}`;
  } else if (response.status === 400 || response.status === 422) {
    message = `Invalid ${what.toLowerCase()}: ${message}`;
  }
  return new ApiError(message, {
    status: response.status,
    code: detail.code || null,
    param: detail.param || null,
    retryAfter: retryAfter ? Number(retryAfter) : null,
  });
}

async function request(url, what, options = {}) {
  let response;
  try {
    response = await fetch(url, { ...options, headers: withKey(options.headers) });
  } catch (error) {
    if (error.name === "AbortError") throw error;
    throw new ApiError(`${what} failed: the server cannot be reached.`, { code: "network" });
  }
  if (!response.ok) throw await errorFrom(response, what);
  return response;
}

async function json(url, what, body) {
  const options = body === undefined ? {} : {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify(body),
  };
  return (await request(url, what, options)).json();
}

export const getVocabulary = () => json("/v1/schema/vocabulary", "Loading the vocabulary");
export const validateCanvas = (body) => json("/v1/canvases/validate", "Canvas check", body);
export const submitRender = (body) => json("/v1/renders", "Render request", body);
export const getRender = (id) => json(`/v1/renders/${encodeURIComponent(id)}`, "Render status");
export const cancelRender = (id) =>
  json(`/v1/renders/${encodeURIComponent(id)}/cancel`, "Cancel", {});

/** Whether a health route answers 2xx. */
export async function isUp(url) {
  try {
    return (await fetch(url, { headers: withKey() })).ok;
  } catch {
    return false;
  }
}

/** The first model the LLM service offers, or "omost" when it cannot be listed. */
export async function llmModel() {
  try {
    const list = await json("/llm/v1/models", "Listing models");
    return (list.data && list.data[0] && list.data[0].id) || "omost";
  } catch {
    return "omost";
  }
}

/** Whether an error means the API key is missing or wrong. */
export const isKeyError = (error) => error instanceof ApiError && error.status === 401;

/**
 * Where an <img> or a download link can fetch `url` from: the URL itself without a key (the
 * browser sends no Authorization header for it), else the image fetched with the key as a
 * blob URL.
 */
export async function imageSource(url) {
  if (!apiKey()) return url;
  const response = await request(url, "Loading an image");
  return URL.createObjectURL(await response.blob());
}

/**
 * Yield the events `{event, data, id}` of a render job's server-sent event stream, read with
 * fetch so that the API key goes with it (EventSource cannot send headers).
 */
export async function* renderEvents(id, signal) {
  const response = await request(`/v1/renders/${encodeURIComponent(id)}/events`, "Render events", {
    headers: { accept: "text/event-stream" },
    signal,
  });
  yield* sseEvents(response.body);
}

// Yield the `data:` payloads of a server-sent event stream read from a fetch body.
async function* sseData(body) {
  for await (const event of sseEvents(body)) {
    if (event.data) yield event.data;
  }
}

// Yield `{event, data, id}` for each event of a server-sent event stream read from a fetch body.
async function* sseEvents(body) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value.replace(/\r\n/g, "\n");
    let cut;
    while ((cut = buffer.indexOf("\n\n")) >= 0) {
      const event = buffer.slice(0, cut);
      buffer = buffer.slice(cut + 2);
      const lines = event.split("\n");
      const field = (name) =>
        lines
          .filter((line) => line.startsWith(`${name}:`))
          .map((line) => line.slice(name.length + 1).replace(/^ /, ""));
      const data = field("data").join("\n");
      if (data) yield { event: field("event")[0] || "message", data, id: field("id")[0] || null };
    }
  }
}

/**
 * Stream a chat answer. Calls `onText(fullTextSoFar)` for every piece and returns the final
 * `{text, omost}` where `omost` is the service's validated canvas field (or null).
 *
 * @throws {ApiError} When the service refuses, is down, or the stream ends with an error event.
 */
export async function streamChat({ model, messages, seed, signal, onText }) {
  const body = { model, messages, stream: true };
  if (seed !== null && seed !== undefined) body.seed = seed;
  const response = await request("/llm/v1/chat/completions", "Chat", {
    method: "POST",
    headers: { "content-type": "application/json", accept: "text/event-stream" },
    body: JSON.stringify(body),
    signal,
  });
  let text = "";
  let omost = null;
  for await (const data of sseData(response.body)) {
    if (data === "[DONE]") break;
    const chunk = JSON.parse(data);
    if (chunk.error) {
      throw new ApiError(chunk.error.message || "The LLM failed", { code: chunk.error.code });
    }
    for (const choice of chunk.choices || []) {
      if (choice.delta && choice.delta.content) {
        text += choice.delta.content;
        onText(text);
      }
    }
    if (chunk.omost) omost = chunk.omost;
  }
  return { text, omost };
}

/** Turn a preview payload (base64, maybe a data URL already) into an <img> source. */
export function previewSource(preview) {
  if (preview.startsWith("data:")) return preview;
  const type = preview.startsWith("/9j/") ? "jpeg" : preview.startsWith("UklGR") ? "webp" : "png";
  return `data:image/${type};base64,${preview}`;
}
