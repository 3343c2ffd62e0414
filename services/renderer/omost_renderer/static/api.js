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
  if (detail.code === "queue_full") {
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
    response = await fetch(url, options);
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
    return (await fetch(url)).ok;
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

// Yield the `data:` payloads of a server-sent event stream read from a fetch body.
async function* sseData(body) {
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
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).replace(/^ /, ""))
        .join("\n");
      if (data) yield data;
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
