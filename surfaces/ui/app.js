// The UI's entry point: picks the page from the address and renders it into <main>.

import { apiKey, forgetKey } from "./api.js";
import { h, mount, notice } from "./dom.js";
import * as benchmark from "./benchmark.js";
import * as compare from "./compare.js";
import * as experiment from "./experiment.js";
import * as experiments from "./experiments.js";
import * as home from "./home.js";
import * as replay from "./replay.js";
import * as review from "./review.js";
import * as session from "./session.js";
import * as sessions from "./sessions.js";
import * as trace from "./trace.js";
import * as traces from "./traces.js";
import * as usage from "./usage.js";

const ROUTES = [
  [/^\/$/, home, "home"],
  [/^\/experiments\/?$/, experiments, "experiments"],
  [/^\/experiments\/([^/]+)\/?$/, experiment, "experiments"],
  [/^\/compare\/?$/, compare, "experiments"],
  [/^\/traces\/?$/, traces, "traces"],
  [/^\/traces\/([^/]+)\/?$/, trace, "traces"],
  [/^\/sessions\/?$/, sessions, "sessions"],
  [/^\/sessions\/(.+?)\/?$/, session, "sessions"],
  [/^\/usage\/?$/, usage, "usage"],
  [/^\/benchmark\/?$/, benchmark, "benchmark"],
  [/^\/review\/?$/, review, "review"],
  [/^\/review\/([^/]+)\/?$/, review, "review"],
  [/^\/replays\/([^/]+)\/?$/, replay, "traces"],
];

function keyState() {
  const slot = document.getElementById("key-state");
  if (!slot) return;
  if (!apiKey()) {
    slot.textContent = "";
    return;
  }
  mount(
    slot,
    "API key saved · ",
    h("button", { class: "link-button", type: "button", onclick: () => { forgetKey(); window.location.reload(); } }, "forget"),
  );
}

export function renderError(root, error) {
  mount(root, notice("error", "Something went wrong", error.message || String(error), h("p", {}, h("a", { href: "/experiments" }, "Back to the experiments"))));
}

async function start() {
  const root = document.getElementById("app");
  const path = window.location.pathname;
  const found = ROUTES.find(([pattern]) => pattern.test(path));
  keyState();
  if (!found) {
    document.title = "Not found · evalhouse";
    mount(root, notice("error", "Page not found", `Nothing lives at ${path}.`, h("p", {}, "Try the ", h("a", { href: "/experiments" }, "experiments list"), " or the ", h("a", { href: "/benchmark" }, "benchmark view"), ".")));
    document.body.dataset.ready = "true";
    return;
  }
  const [pattern, page, nav] = found;
  for (const link of document.querySelectorAll("[data-nav]")) link.classList.toggle("active", link.dataset.nav === nav);
  const args = pattern.exec(path).slice(1).map(decodeURIComponent);
  const started = performance.now();
  try {
    await page.render(root, ...args);
  } catch (error) {
    renderError(root, error);
  }
  keyState();
  // Tests and curious people read how long the page took to show its data.
  document.body.dataset.renderMs = String(Math.round(performance.now() - started));
  document.body.dataset.ready = "true";
}

start();
