// Review queues: /review lists them; /review/{queue} puts one trace at a time in front of a
// reviewer, as a conversation, with the queue's score form. Keyboard: y / n answer the first
// yes-or-no score, 1-9 pick a category of the first categorical one, Enter (Ctrl+Enter in the
// comment) submits, s skips. Claims, locks and scores are the API's (/api/queues).

import { api, post } from "./api.js";
import { chat } from "./chat.js";
import { fmt, h, mount, notice } from "./dom.js";

const REVIEWER = "evalhouse.reviewer";

// The page's own styles, next to this script (the shell loads app.css only).
const sheet = h("link", { rel: "stylesheet", href: new URL("./review.css", import.meta.url).href });
if (!document.querySelector("link[data-review]")) {
  sheet.dataset.review = "true";
  document.head.append(sheet);
}

function reviewer() {
  try {
    return localStorage.getItem(REVIEWER) || "";
  } catch {
    return "";
  }
}

function progressLine(progress) {
  const left = progress.open + progress.in_review;
  return `${progress.done} of ${progress.total} reviewed · ${progress.skipped} skipped · ${left} left`;
}

function askName(root, then) {
  const input = h("input", { type: "text", name: "reviewer", placeholder: "your name", required: true, autocomplete: "name", "aria-label": "reviewer name" });
  const form = h(
    "form",
    {
      class: "card review-name",
      onsubmit: (event) => {
        event.preventDefault();
        const name = input.value.trim();
        if (!name) return;
        localStorage.setItem(REVIEWER, name);
        then(name);
      },
    },
    h("h2", {}, "Who is reviewing?"),
    h("p", { class: "muted" }, "Your name goes with your scores and holds the item you are reviewing, so two people never review the same trace at once."),
    input,
    h("button", { type: "submit", class: "primary" }, "Start reviewing"),
  );
  mount(root, form);
  input.focus();
}

async function renderList(root) {
  document.title = "Review queues · evalhouse";
  const body = await api("/api/queues");
  if (!body.queues.length) {
    mount(root, h("h1", {}, "Review queues"), notice("info", "No review queue yet", "Make one with POST /api/queues: a filter over production traces and the scores a reviewer gives each one (docs/online.md)."));
    return;
  }
  mount(
    root,
    h("h1", {}, "Review queues"),
    h(
      "table",
      { class: "table", id: "queues-table" },
      h("thead", {}, h("tr", {}, ["Queue", "Filter", "Scores", "Progress"].map((t) => h("th", {}, t)))),
      h(
        "tbody",
        {},
        body.queues.map((q) =>
          h(
            "tr",
            { "data-queue": q.name },
            h("td", {}, h("a", { href: `/review/${encodeURIComponent(q.name)}` }, q.name)),
            h("td", { class: "mono small" }, q.filter || q.where || "all traces"),
            h("td", {}, q.score_configs.map((c) => c.name).join(", ")),
            h("td", {}, progressLine(q.progress)),
          ),
        ),
      ),
    ),
  );
}

/** The conversation of a trace: its last counted model call's chat, else its input/output. */
function conversation(detail) {
  const calls = (detail.model_calls || []).filter((c) => c.counted);
  const last = calls[calls.length - 1];
  if (last && last.chat.length) {
    const produced = last.chat.length - 1;
    return chat(last.chat.slice(0, produced), last.chat.slice(produced));
  }
  const row = detail.trace || {};
  return chat(row.input_preview ? [{ role: "user", content: row.input_preview }] : [], row.output_preview ? [{ role: "assistant", content: row.output_preview }] : []);
}

function field(config, index) {
  const name = `score-${config.name}`;
  if (config.type === "boolean") {
    return h(
      "fieldset",
      { class: "review-field", "data-score": config.name, "data-type": "boolean" },
      h("legend", {}, config.name),
      [["yes", "y"], ["no", "n"]].map(([label, key]) => h("label", { class: "choice" }, h("input", { type: "radio", name, value: label }), ` ${label} `, h("kbd", {}, key))),
    );
  }
  if (config.type === "categorical") {
    return h(
      "fieldset",
      { class: "review-field", "data-score": config.name, "data-type": "categorical" },
      h("legend", {}, config.name),
      config.categories.map((category, i) => h("label", { class: "choice" }, h("input", { type: "radio", name, value: category }), ` ${category} `, i < 9 ? h("kbd", {}, String(i + 1)) : null)),
    );
  }
  return h(
    "label",
    { class: "review-field", "data-score": config.name, "data-type": "numeric" },
    h("span", { class: "legend" }, `${config.name} (${fmt.num(config.min)} to ${fmt.num(config.max)})`),
    h("input", { type: "number", name, min: config.min, max: config.max, step: "any", "data-index": index }),
  );
}

function answers(form, configs) {
  const scores = {};
  for (const config of configs) {
    const name = `score-${config.name}`;
    if (config.type === "numeric") {
      const value = form.elements[name].value;
      if (value !== "") scores[config.name] = Number(value);
    } else {
      const checked = form.querySelector(`input[name="${CSS.escape(name)}"]:checked`);
      if (checked) scores[config.name] = config.type === "boolean" ? checked.value === "yes" : checked.value;
    }
  }
  return scores;
}

function pick(form, configs, key) {
  const boolean = configs.find((c) => c.type === "boolean");
  if (boolean && (key === "y" || key === "n")) {
    form.querySelector(`input[name="${CSS.escape(`score-${boolean.name}`)}"][value="${key === "y" ? "yes" : "no"}"]`).checked = true;
    return true;
  }
  const categorical = configs.find((c) => c.type === "categorical");
  const index = Number(key) - 1;
  if (categorical && Number.isInteger(index) && index >= 0 && index < Math.min(9, categorical.categories.length)) {
    form.querySelectorAll(`input[name="${CSS.escape(`score-${categorical.name}`)}"]`)[index].checked = true;
    return true;
  }
  return false;
}

async function renderQueue(root, queueName, name) {
  document.title = `Review ${queueName} · evalhouse`;
  const base = `/api/queues/${encodeURIComponent(queueName)}`;
  const claimed = await api(`${base}/next`, { reviewer: name });
  const crumbs = h("div", { class: "crumbs" }, h("a", { href: "/review" }, "Review queues"), ` / ${queueName}`);
  const progress = h("p", { id: "review-progress", class: "muted" }, progressLine(claimed.progress));
  const who = h("p", { class: "muted small" }, `Reviewing as ${name} · `, h("button", { type: "button", class: "link-button", onclick: () => { localStorage.removeItem(REVIEWER); window.location.reload(); } }, "not you?"));
  if (!claimed.item) {
    mount(root, crumbs, h("h1", {}, queueName), progress, notice("info", "Nothing left to review", `Every item of ${queueName} is reviewed, skipped or held by another reviewer.`), who);
    root.dataset.state = "empty";
    return;
  }
  const item = claimed.item;
  const detail = await api(`/api/traces/${encodeURIComponent(item.trace_id)}`);
  const configs = claimed.score_configs;
  const status = h("p", { class: "review-status", role: "status" });
  const comment = h("textarea", { name: "comment", rows: 3, placeholder: "comment (optional)" });
  const form = h("form", { class: "card review-form", id: "review-form" }, h("h2", {}, "Your scores"), configs.map(field), h("label", { class: "review-field" }, h("span", { class: "legend" }, "comment"), comment));
  const submit = async (skip) => {
    const scores = answers(form, configs);
    if (!skip && !Object.keys(scores).length) {
      status.textContent = "Give at least one score, or skip (s).";
      return;
    }
    status.textContent = skip ? "Skipping…" : "Saving…";
    try {
      await post(`${base}/items/${encodeURIComponent(item.trace_id)}`, skip ? { reviewer: name, skip: true } : { reviewer: name, scores, comment: comment.value });
    } catch (error) {
      status.textContent = error.message;
      return;
    }
    document.removeEventListener("keydown", keys);
    await renderQueue(root, queueName, name);
  };
  const keys = (event) => {
    if (event.target === comment) {
      if (event.key === "Enter" && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        submit(false);
      }
      return;
    }
    if (event.target instanceof HTMLInputElement && event.target.type === "number" && event.key !== "Enter") return;
    if (event.key === "Enter") {
      event.preventDefault();
      submit(false);
    } else if (event.key === "s") {
      submit(true);
    } else if (pick(form, configs, event.key)) {
      event.preventDefault();
    }
  };
  document.addEventListener("keydown", keys);
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    submit(false);
  });
  const row = detail.trace || {};
  mount(
    root,
    crumbs,
    h("h1", {}, queueName),
    progress,
    h(
      "div",
      { class: "review-layout" },
      h(
        "section",
        { class: "card review-trace", id: "review-trace", "data-trace-id": item.trace_id },
        h("div", { class: "card-head" }, h("h2", {}, row.root_name || "Trace"), h("a", { href: `/traces/${item.trace_id}`, class: "small" }, "open the trace")),
        h("p", { class: "muted small mono" }, item.trace_id, row.start_time ? ` · ${row.start_time}` : "", ` · held for you until ${item.locked_until}`),
        conversation(detail),
      ),
      h(
        "div",
        {},
        form,
        h(
          "div",
          { class: "review-actions" },
          h("button", { type: "button", class: "primary", id: "review-submit", onclick: () => submit(false) }, "Submit ", h("kbd", {}, "Enter")),
          h("button", { type: "button", id: "review-skip", onclick: () => submit(true) }, "Skip ", h("kbd", {}, "s")),
        ),
        status,
        h("p", { class: "muted small" }, "Keys: y / n for yes-or-no, 1-9 for a category, Enter to submit (Ctrl+Enter in the comment), s to skip."),
        who,
      ),
    ),
  );
  root.dataset.state = "item";
}

export async function render(root, queueName) {
  if (!queueName) return renderList(root);
  const name = reviewer();
  if (!name) {
    await new Promise((resolve) => askName(root, resolve));
    document.body.dataset.ready = "false";
  }
  await renderQueue(root, queueName, reviewer());
}
