// Talking to the JSON API: GET /api/models, GET /api/models/{name}/card, POST .../predict and
// POST .../trace. Fetch helpers, the API key, and errors in plain words.

export const API = "/api/models";

export class ApiError extends Error {
  constructor(status, body) {
    super(body?.error || `HTTP ${status}`);
    this.name = "ApiError";
    this.status = status;
    this.code = body?.code;
    this.field = body?.field;
  }
}

// Where the service requires API keys, the page asks for one after a 401 and keeps it for
// this browser tab only (sessionStorage), sending it as X-API-Key.
const KEY_STORE = "glassbox-api-key";

export function apiKey() {
  try {
    return sessionStorage.getItem(KEY_STORE);
  } catch {
    return null;
  }
}

function withKey(options = {}) {
  const key = apiKey();
  if (!key) return options;
  return { ...options, headers: { ...(options.headers || {}), "X-API-Key": key } };
}

// Keeps a key for this tab; the page reloads to use it.
export function storeKey(key) {
  try {
    sessionStorage.setItem(KEY_STORE, key);
  } catch {
    // Storage is off: the key cannot be kept.
  }
}

export async function api(path, options = {}) {
  const response = await fetch(path, withKey(options));
  let body = null;
  try {
    body = await response.json();
  } catch (error) {
    if (error.name === "AbortError") throw error;
    if (response.ok) throw new Error("the service's answer was not JSON");
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

export function postJson(path, data, signal) {
  return api(path, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(data),
    signal,
  });
}

export function postFile(path, file, signal) {
  const form = new FormData();
  form.append("file", file, file.name || "image.png");
  return api(path, { method: "POST", body: form, signal });
}

// What went wrong, in plain words. Null for a request the page itself cancelled.
export function explain(error) {
  if (error?.name === "AbortError") return null;
  if (!(error instanceof ApiError)) {
    return `The service could not be reached (${error?.message || error}). Is it still running?`;
  }
  const lead =
    {
      400: "The request was not understood.",
      401: "This service needs an API key: enter one at the top of the page.",
      404: "Not found.",
      413: "That is too large for the service.",
      415: "That file is not an image the model can read.",
      422: "The model refused the input.",
      503: "The model is not ready, or the service is busy. Try again in a moment.",
      504: "The model took too long to answer.",
    }[error.status] || `The service answered with an error (${error.status}).`;
  return `${lead} ${error.message}`;
}

// A request slot: a newer request cancels the older one, so a stale answer never wins.
export function requestSlot() {
  let controller = null;
  return () => {
    controller?.abort();
    controller = new AbortController();
    return controller.signal;
  };
}

// A model's example input (/examples/{name}) as a File, ready to send like an upload.
export async function exampleFile(name) {
  const response = await fetch(`/examples/${name}`, withKey());
  if (!response.ok) throw new ApiError(response.status, await response.json().catch(() => null));
  const blob = await response.blob();
  const ext = (blob.type.split("/")[1] || "png").replace("jpeg", "jpg");
  return new File([blob], `${name}-example.${ext}`, { type: blob.type });
}
