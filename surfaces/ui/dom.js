// Small DOM and formatting helpers. Everything user-supplied goes in as text, never as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function apply(node, attrs) {
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") node.setAttribute("class", Array.isArray(value) ? value.filter(Boolean).join(" ") : value);
    else if (key === "text") node.textContent = String(value);
    else if (key === "style" && typeof value === "object") Object.assign(node.style, value);
    else if (key === "dataset") Object.assign(node.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") node.addEventListener(key.slice(2), value);
    else if (key === "value" && "value" in node) node.value = value;
    else if (key === "checked" || key === "disabled" || key === "selected") node[key] = Boolean(value);
    else node.setAttribute(key, value === true ? "" : String(value));
  }
}

function append(node, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** An HTML element: h("a", {href: "/", class: "x"}, "text", child, [more]). */
export function h(tag, attrs, ...children) {
  const node = document.createElement(tag);
  apply(node, attrs);
  append(node, children);
  return node;
}

/** An SVG element, same calling convention as h(). */
export function s(tag, attrs, ...children) {
  const node = document.createElementNS(SVG_NS, tag);
  apply(node, attrs);
  append(node, children);
  return node;
}

export function clear(node) {
  while (node.firstChild) node.removeChild(node.firstChild);
  return node;
}

export function mount(node, ...children) {
  clear(node);
  append(node, children);
  return node;
}

// --- formatting -------------------------------------------------------------------------------

const isNum = (v) => typeof v === "number" && Number.isFinite(v);

export const fmt = {
  int(v) {
    return isNum(v) ? Math.round(v).toLocaleString("en-US") : "–";
  },
  num(v, digits = 2) {
    if (!isNum(v)) return "–";
    if (Math.abs(v) >= 1000) return Math.round(v).toLocaleString("en-US");
    return v.toLocaleString("en-US", { maximumFractionDigits: digits });
  },
  // Scores are in [0, 1]; people read them as percentages.
  score(v) {
    return isNum(v) ? `${(v * 100).toFixed(1).replace(/\.0$/, "")}%` : "–";
  },
  signedScore(v) {
    if (!isNum(v)) return "–";
    const text = `${(Math.abs(v) * 100).toFixed(1)} pts`;
    return v > 0 ? `+${text}` : v < 0 ? `−${text}` : "±0";
  },
  ms(v) {
    if (!isNum(v)) return "–";
    if (v >= 60000) return `${(v / 60000).toFixed(1)} min`;
    if (v >= 1000) return `${(v / 1000).toFixed(2)} s`;
    if (v >= 10 || v === 0) return `${Math.round(v)} ms`;
    return `${v.toFixed(2)} ms`;
  },
  usd(v) {
    if (!isNum(v)) return "unknown";
    if (v === 0) return "$0";
    if (Math.abs(v) < 0.01) return `$${v.toPrecision(2)}`;
    return `$${v.toLocaleString("en-US", { minimumFractionDigits: 2, maximumFractionDigits: 4 })}`;
  },
  tokens(v) {
    if (!isNum(v)) return "–";
    if (v >= 1e6) return `${(v / 1e6).toFixed(2)}M`;
    if (v >= 1e4) return `${(v / 1e3).toFixed(1)}k`;
    return fmt.int(v);
  },
  pValue(v) {
    if (!isNum(v)) return "–";
    return v < 0.001 ? "<0.001" : v.toFixed(3);
  },
  time(v) {
    const d = toDate(v);
    if (!d) return "–";
    return d.toLocaleString("en-GB", { year: "numeric", month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  },
  shortTime(v) {
    const d = toDate(v);
    if (!d) return "";
    return d.toLocaleString("en-GB", { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" });
  },
  // Labels for runs: the time of day with seconds when the runs are all from one day.
  runLabels(values) {
    const dates = values.map(toDate);
    const days = new Set(dates.map((d) => (d ? d.toDateString() : "")));
    return dates.map((d) => {
      if (!d) return "";
      if (days.size === 1) return d.toLocaleTimeString("en-GB", { hour: "2-digit", minute: "2-digit", second: "2-digit" });
      return fmt.shortTime(d);
    });
  },
  ago(v) {
    const d = toDate(v);
    if (!d) return "–";
    const seconds = (Date.now() - d.getTime()) / 1000;
    if (seconds < 60) return "just now";
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    if (seconds < 86400 * 30) return `${Math.floor(seconds / 86400)} d ago`;
    return fmt.time(d);
  },
};

export function toDate(v) {
  if (v === null || v === undefined || v === "") return null;
  if (v instanceof Date) return v;
  if (typeof v === "number") return new Date(v > 1e14 ? v / 1e6 : v > 1e11 ? v : v * 1000);
  // ClickHouse DateTime64 text has no zone marker; evalhouse stores UTC.
  let text = String(v).trim().replace(" ", "T");
  if (!/[zZ]|[+-]\d\d:?\d\d$/.test(text)) text += "Z";
  const d = new Date(text);
  return Number.isNaN(d.getTime()) ? null : d;
}

/** A JSON value as short readable text: strings as they are, the rest as compact JSON. */
export function preview(value, max = 300) {
  let text;
  if (value === null || value === undefined) text = "";
  else if (typeof value === "string") text = value;
  else text = JSON.stringify(value);
  return text.length > max ? `${text.slice(0, max)}…` : text;
}

/** Full text of a value, pretty-printed when it is structured. */
export function pretty(value) {
  if (value === null || value === undefined) return "";
  if (typeof value === "string") {
    const trimmed = value.trim();
    if ((trimmed.startsWith("{") || trimmed.startsWith("[")) && trimmed.length < 200000) {
      try {
        return JSON.stringify(JSON.parse(trimmed), null, 2);
      } catch {
        return value;
      }
    }
    return value;
  }
  return JSON.stringify(value, null, 2);
}

/** Values from the API may arrive JSON-encoded (the tables keep JSON text). */
export function decoded(value) {
  if (typeof value !== "string") return value;
  const trimmed = value.trim();
  if (trimmed === "") return "";
  if (/^[[{"]|^-?\d|^(true|false|null)$/.test(trimmed)) {
    try {
      return JSON.parse(trimmed);
    } catch {
      return value;
    }
  }
  return value;
}

export function debounce(fn, ms) {
  let timer = null;
  return (...args) => {
    clearTimeout(timer);
    timer = setTimeout(() => fn(...args), ms);
  };
}

/** The query string as an object, and back. */
export function params() {
  return Object.fromEntries(new URLSearchParams(window.location.search));
}

export function setParams(values, { push = false } = {}) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== "" && value !== false) search.set(key, String(value));
  }
  const query = search.toString();
  const url = `${window.location.pathname}${query ? `?${query}` : ""}`;
  if (push) history.pushState(null, "", url);
  else history.replaceState(null, "", url);
}

export function query(values) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(values)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

/** Where a cost comes from, from its rows' provenance counts: "inferred", "provided + inferred"… */
export function costSource(provenance) {
  const counts = provenance || {};
  const kinds = ["provided", "inferred", "partly_unknown", "unknown"].filter((k) => counts[k]);
  if (kinds.length) return kinds.map((k) => k.replace("_", " ")).join(" + ");
  return counts.none ? "no model calls" : "–";
}

/** Provenance counts added up over several experiments (runs of a chart, say). */
export function addProvenance(items) {
  const total = {};
  for (const item of items) for (const [k, v] of Object.entries((item && item.cost_provenance) || {})) total[k] = (total[k] || 0) + v;
  return total;
}

/** A coloured chip for a score in [0, 1]. */
export function scoreChip(value) {
  if (typeof value !== "number") return h("span", { class: "chip muted" }, "–");
  const level = value >= 0.8 ? "good" : value >= 0.5 ? "mid" : "bad";
  return h("span", { class: `chip score-${level}`, title: String(value) }, fmt.score(value));
}

/** A message box for empty states and errors, in words. */
export function notice(kind, title, ...body) {
  return h("div", { class: `notice notice-${kind}`, role: kind === "error" ? "alert" : "status" }, h("strong", {}, title), ...body.map((b) => (typeof b === "string" ? h("p", {}, b) : b)));
}

export function copyButton(text, label = "copy") {
  return h(
    "button",
    {
      class: "link-button",
      type: "button",
      title: `copy ${text}`,
      onclick: async (event) => {
        try {
          await navigator.clipboard.writeText(text);
          event.target.textContent = "copied";
          setTimeout(() => (event.target.textContent = label), 1200);
        } catch {
          event.target.textContent = "select and copy";
        }
      },
    },
    label,
  );
}
