// Calls to the evalhouse HTTP API. When the server wants an API key (401), the user is asked
// once; the key stays in this browser (localStorage) and goes with every later call.

import { h } from "./dom.js";

const KEY = "evalhouse.apiKey";

export class ApiError extends Error {
  constructor(message, status) {
    super(message);
    this.status = status;
  }
}

export function apiKey() {
  try {
    return localStorage.getItem(KEY) || "";
  } catch {
    return "";
  }
}

export function forgetKey() {
  localStorage.removeItem(KEY);
}

function headers() {
  const key = apiKey();
  return key ? { Authorization: `Bearer ${key}` } : {};
}

let asking = null;

/** Show the key form (once, however many calls were refused) and resolve when it is saved. */
function askForKey(message) {
  if (asking) return asking;
  asking = new Promise((resolve) => {
    const input = h("input", { type: "password", name: "api-key", placeholder: "API key", autocomplete: "off", required: true, "aria-label": "API key" });
    const form = h(
      "form",
      {
        class: "key-form",
        onsubmit: (event) => {
          event.preventDefault();
          const value = input.value.trim();
          if (!value) return;
          localStorage.setItem(KEY, value);
          overlay.remove();
          asking = null;
          resolve();
        },
      },
      h("h2", {}, "This evalhouse needs an API key"),
      h("p", {}, message || "The server refused the request without a valid key."),
      h("p", { class: "muted" }, "Use one of the keys the server was started with (EVALHOUSE_API_KEYS). It is kept in this browser only and sent with each API call."),
      input,
      h("button", { type: "submit", class: "primary" }, "Save key"),
    );
    const overlay = h("div", { class: "overlay" }, form);
    document.body.append(overlay);
    input.focus();
  });
  return asking;
}

async function send(path, options = {}) {
  for (let attempt = 0; attempt < 5; attempt += 1) {
    let response;
    try {
      response = await fetch(path, { ...options, headers: { ...headers(), ...(options.headers || {}) } });
    } catch (error) {
      throw new ApiError(`cannot reach the evalhouse server (${error.message}); check that it is still running`, 0);
    }
    if (response.status === 401) {
      const hadKey = Boolean(apiKey());
      const body = await response.json().catch(() => ({}));
      await askForKey(hadKey ? "The saved key was refused; enter a valid one." : body.error);
      continue;
    }
    return response;
  }
  throw new ApiError("the server refused every API key given; check EVALHOUSE_API_KEYS on the server", 401);
}

async function failure(response) {
  let message = `${response.status} ${response.statusText}`;
  try {
    const body = await response.json();
    if (body && body.error) message = body.error;
  } catch {
    // not JSON: keep the status line
  }
  if (response.status === 404 && message.startsWith("404")) {
    message = "this part of the API is not available on this server (404); upgrade evalhouse or check the address";
  }
  return new ApiError(message, response.status);
}

/** GET a JSON document from the API: api("/api/experiments", {limit: 50}). */
export async function api(path, params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const query = search.toString();
  const response = await send(query ? `${path}?${query}` : path);
  if (!response.ok) throw await failure(response);
  return response.json();
}

/** Send a JSON body (POST by default) and return the JSON answer: post("/api/feedback", {...}). */
export async function post(path, body, method = "POST") {
  const response = await send(path, { method, headers: { "Content-Type": "application/json" }, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) throw await failure(response);
  return response.json().catch(() => ({}));
}

/** Download an API response as a file (a plain link could not send the key). */
export async function download(path, filename) {
  const response = await send(path);
  if (!response.ok) throw await failure(response);
  saveBlob(await response.blob(), filename);
}

export function saveBlob(blob, filename) {
  const url = URL.createObjectURL(blob);
  const link = h("a", { href: url, download: filename, style: { display: "none" } });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
}
