// "Add to dataset": the chosen production traces become rows of a new version of a dataset
// (POST /api/datasets/{name}/from-traces; the trace's input as input, its output as expected).

import { api, post } from "./api.js";
import { fmt, h, mount } from "./dom.js";

const NAME = /^[A-Za-z0-9_.:-]{1,128}$/;

/**
 * A button that opens a small form: a dataset name (new or existing) and "Add".
 * `traceIds()` gives the traces to add when the form is sent; `label` names them.
 */
export function addToDataset(traceIds, { id = "add-dataset", label = () => "Add to dataset" } = {}) {
  const slot = h("span", { class: "add-dataset", id });
  const result = h("span", { class: "small add-dataset-result", role: "status" });
  const button = h("button", { type: "button", class: "button", id: `${id}-open` }, label());
  const names = h("datalist", { id: `${id}-names` });
  const input = h("input", { type: "text", id: `${id}-name`, list: `${id}-names`, placeholder: "dataset name", "aria-label": "dataset name", size: 18 });
  const send = h("button", { type: "submit", class: "button primary", id: `${id}-send` }, "Add");
  const form = h("form", { class: "inline-form", hidden: true }, input, names, send);

  button.addEventListener("click", async () => {
    form.hidden = !form.hidden;
    if (form.hidden) return;
    input.focus();
    try {
      const listed = await api("/api/datasets");
      const rows = Array.isArray(listed) ? listed : listed.datasets || [];
      mount(names, rows.map((row) => h("option", { value: row.name })));
    } catch {
      // The names only help typing; a new name works without them.
    }
  });
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const name = input.value.trim();
    const ids = traceIds();
    if (!NAME.test(name)) {
      result.className = "small add-dataset-result bad-text";
      result.textContent = "Name the dataset with letters, digits and _ . : - (at most 128).";
      return;
    }
    if (!ids.length) {
      result.className = "small add-dataset-result bad-text";
      result.textContent = "Select at least one trace first.";
      return;
    }
    send.disabled = true;
    try {
      const made = await post(`/api/datasets/${encodeURIComponent(name)}/from-traces`, { trace_ids: ids });
      const skipped = (made.skipped || []).length;
      result.className = "small add-dataset-result good-text";
      result.textContent = `Added ${fmt.int(ids.length - skipped)} trace${ids.length - skipped === 1 ? "" : "s"} to ${made.name} (version ${made.version})${skipped ? `; ${skipped} left out: ${made.skipped.map((s) => s.reason).join("; ")}` : ""}.`;
      form.hidden = true;
    } catch (error) {
      result.className = "small add-dataset-result bad-text";
      result.textContent = `Not added: ${error.message}`;
    } finally {
      send.disabled = false;
    }
  });
  mount(slot, button, form, result);
  slot.refresh = () => { button.textContent = label(); };
  return slot;
}
