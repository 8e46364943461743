// The landing page: the production traces when an app sends some, else the experiments (the
// place to start for a team that only runs evals). Old links to "/?name=..." still open the
// experiments list.

import { api } from "./api.js";
import * as experiments from "./experiments.js";
import * as traces from "./traces.js";

async function hasProductionTraces() {
  try {
    // Newest first, one row: the API reads the end of its time-ordered table and stops.
    const data = await api("/api/traces", { since: "30d", limit: 1 });
    return (data.traces || []).length > 0;
  } catch {
    return false; // a server without the explorer: the experiments, as before
  }
}

function highlight(nav) {
  for (const link of document.querySelectorAll("[data-nav]")) link.classList.toggle("active", link.dataset.nav === nav);
}

export async function render(root) {
  if (window.location.search || !(await hasProductionTraces())) {
    highlight("experiments");
    return experiments.render(root);
  }
  history.replaceState(null, "", "/traces");
  highlight("traces");
  return traces.render(root);
}
