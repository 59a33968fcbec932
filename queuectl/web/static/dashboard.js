// queuectl dashboard: keeps the server-rendered pages live from the shared event stream.
// Everything a job holds is attacker-controlled: it only ever reaches the page through
// textContent and attribute setters, never as markup.
"use strict";

(function () {
  const body = document.body;
  const page = body.dataset.page;
  const readOnly = body.hasAttribute("data-read-only");
  const csrf = document.querySelector('meta[name="csrf-token"]').content;
  const CANCELLABLE = ["blocked", "pending", "failed", "processing"];
  const RETRYABLE = ["completed", "dead", "cancelled"];

  // -- small helpers -------------------------------------------------------------------------

  // Control characters shown escaped, as queuectl.text.printable does on the server.
  function printable(text, multiline) {
    const unsafe = multiline
      ? /[\x00-\x08\x0b-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g
      : /[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;
    return String(text).replace(unsafe, function (c) {
      const code = c.charCodeAt(0);
      if (code >= 0xdc80 && code <= 0xdcff) return "\\x" + (code - 0xdc00).toString(16).padStart(2, "0");
      return code < 0x100 ? "\\x" + code.toString(16).padStart(2, "0") : "\\u" + code.toString(16).padStart(4, "0");
    });
  }
  function line(value) {
    return value === null || value === undefined || value === "" ? "-" : printable(value, false);
  }
  function when(iso) {
    return iso ? iso.slice(0, 19).replace("T", " ") : "-";
  }
  function duration(s) {
    if (s === null || s === undefined) return "-";
    if (s < 60) return s.toFixed(2) + " s";
    const m = Math.floor(s / 60);
    return m < 60 ? m + " min " + Math.floor(s % 60) + " s" : Math.floor(m / 60) + " h " + (m % 60) + " min";
  }
  function el(tag, attrs, children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (name === "text") node.textContent = value;
      else node.setAttribute(name, value);
    }
    for (const child of children || []) node.append(child);
    return node;
  }
  function badge(state) {
    return el("span", { class: "state state-" + state, text: state });
  }
  function flash(message, bad) {
    const box = document.getElementById("flash");
    box.textContent = message;
    box.className = bad ? "flash flash-error" : "flash";
    box.hidden = false;
    clearTimeout(flash.timer);
    flash.timer = setTimeout(function () { box.hidden = true; }, 6000);
  }

  // -- actions: POST with the CSRF token, the result shown; the stream shows the change ------

  function actionForm(verb, jobId, label) {
    const path = "/jobs/" + encodeURIComponent(jobId) + "/" + verb;
    const form = el("form", { method: "post", action: "/actions" + path, class: "action", "data-api": "/api" + path }, [
      el("input", { type: "hidden", name: "csrf_token", value: csrf }),
      el("input", { type: "hidden", name: "next", value: location.pathname + location.search }),
      el("button", { type: "submit", class: "btn btn-" + verb, "data-job": jobId, text: label }),
    ]);
    return form;
  }
  function jobActions(job) {
    const cell = [];
    if (readOnly) return cell;
    if (CANCELLABLE.includes(job.state)) cell.push(actionForm("cancel", job.id, "Cancel"));
    if (RETRYABLE.includes(job.state)) cell.push(actionForm("retry", job.id, "Retry"));
    return cell;
  }
  document.addEventListener("submit", async function (event) {
    const form = event.target;
    if (!form.classList.contains("action")) return;
    event.preventDefault();
    const button = form.querySelector("button");
    button.disabled = true;
    try {
      const response = await fetch(form.dataset.api, {
        method: "POST",
        headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
        credentials: "same-origin",
      });
      const answer = await response.json();
      if (!response.ok) flash(answer.error || "The request failed.", true);
      else flash(describe(form.dataset.api, answer), false);
      refresh();
    } catch (error) {
      flash("The dashboard cannot be reached.", true);
    } finally {
      button.disabled = false;
    }
  });
  function describe(api, answer) {
    if (api.endsWith("/pause")) return "Paused: no job starts until the queue is resumed.";
    if (api.endsWith("/resume")) return "Resumed: pools start jobs again.";
    if (api.endsWith("/retry")) return (answer.retried || []).map(function (id) { return line(id) + ": retried"; }).join("; ");
    return Object.entries(answer).map(function ([id, state]) {
      return line(id) + ": " + (state === "processing" ? "cancel requested" : state);
    }).join("; ");
  }

  // -- rendering rows from the JSON of the API (the same shape as `queuectl list --json`) ----

  function jobRow(job, dead) {
    const cells = [
      el("td", { class: "id" }, [el("a", { href: "/jobs/" + encodeURIComponent(job.id), text: line(job.id) })]),
      el("td", {}, [badge(job.state)]),
      el("td", { class: "num", text: job.attempts + "/" + (job.max_retries + 1) }),
      el("td", { class: "time", title: job.updated_at || "", text: when(job.updated_at) }),
    ];
    if (dead) cells.push(el("td", { class: "error" }, [el("span", { class: "cut", text: line(job.last_error) })]));
    cells.push(el("td", { class: "cmd" }, [el("code", { class: "cut", text: line(job.command) })]));
    if (!readOnly) cells.push(el("td", { class: "actions" }, jobActions(job)));
    return el("tr", { "data-id": job.id }, cells);
  }
  function fillTable(table, jobs, empty) {
    const dead = table.dataset.dead === "1";
    const tbody = table.tBodies[0];
    const rows = jobs.map(function (job) { return jobRow(job, dead); });
    if (!rows.length) rows.push(el("tr", { class: "empty" }, [el("td", { colspan: "7", text: empty })]));
    tbody.replaceChildren.apply(tbody, rows);
  }
  function fillCounts(status) {
    for (const node of document.querySelectorAll("[data-count]")) {
      const state = node.dataset.count;
      node.textContent = state === "total" ? status.total : status.counts[state];
    }
  }

  // -- the overview ---------------------------------------------------------------------------

  function overview(data) {
    const status = data.status;
    const c = status.counts;
    fillCounts(status);
    const finished = c.completed + c.dead + c.cancelled;
    let x = 0;
    for (const state of ["completed", "dead", "cancelled", "processing", "failed"]) {
      const w = status.total ? (c[state] * 1000) / status.total : 0;
      const bar = document.querySelector('[data-bar="' + state + '"]');
      bar.setAttribute("x", x);
      bar.setAttribute("width", w);
      x += w;
    }
    document.getElementById("progress-label").textContent = finished + "/" + status.total + " finished";
    document.getElementById("paused").hidden = !status.paused;
    for (const form of document.querySelectorAll("form[data-show]")) {
      form.hidden = (form.dataset.show === "paused") !== status.paused;
    }
    fillTable(document.getElementById("recent"), data.jobs, "No jobs yet.");
    fillTable(document.getElementById("dead"), data.dead, "The dead letter queue is empty.");
    const workers = status.workers.map(function (w) {
      return el("tr", {}, [
        el("td", { class: "id", text: line(w.id) }), el("td", { text: line(w.host) }),
        el("td", { class: "num", text: w.pid }), el("td", { class: "num", text: w.threads }),
        el("td", { class: "time", text: when(w.started_at) }), el("td", { class: "time", text: when(w.heartbeat_at) }),
        el("td", { text: w.stopping ? "stopping" : "running" }),
      ]);
    });
    if (!workers.length) {
      workers.push(el("tr", { class: "empty" }, [el("td", { colspan: "7", text: "No worker pool is running. Start one with: queuectl worker start --count 2" })]));
    }
    const tbody = document.getElementById("workers").tBodies[0];
    tbody.replaceChildren.apply(tbody, workers);
    for (const name of ["throughput", "runtimes"]) {
      const img = document.getElementById("chart-" + name);
      const src = "/charts/" + name + ".svg?v=" + data.history_version;
      if (img.getAttribute("src") !== src) img.setAttribute("src", src);
    }
    const error = document.getElementById("error");
    error.hidden = !data.error;
    error.textContent = data.error ? line(data.error) : "";
  }

  // -- a listing: its rows read again (one page) when the queue changed -----------------------

  async function listing() {
    const box = document.getElementById("listing");
    const response = await fetch(box.dataset.api, { credentials: "same-origin" });
    if (!response.ok) return;
    const table = box.querySelector("table");
    fillTable(table, await response.json(), page === "jobs" ? "No jobs match." : "");
  }

  // -- a job's page ---------------------------------------------------------------------------

  const job = document.getElementById("job");
  let tail = null;
  let shownKey = null;

  function fieldText(key, value) {
    if (key.endsWith("_at") || key === "lease_until") return when(value);
    if (Array.isArray(value)) return value.length ? value.map(line).join(", ") : "-";
    if (value !== null && typeof value === "object") return Object.keys(value).length ? printable(JSON.stringify(value), false) : "-";
    return line(value);
  }
  function attemptNode(a) {
    const running = a.finished_at === null;
    const outputs = [];
    for (const stream of ["stdout", "stderr"]) {
      const title = el("h3", { text: stream });
      if (running) title.append(" ", el("span", { class: "muted", text: "(live)" }));
      const pre = el("pre", running ? { "data-live": stream } : {});
      pre.textContent = printable(a[stream], true);
      outputs.push(title, pre);
    }
    const parts = [
      el("header", {}, [
        el("strong", { text: "#" + a.attempt }), " ", badge(a.outcome || "running"), " ",
        el("span", { text: "exit " + (a.exit_code === null ? "-" : a.exit_code) }), " ",
        el("span", { class: "time", text: when(a.started_at) }), " ",
        el("span", { text: duration(a.duration) }), " ",
        el("span", { class: "muted", text: line(a.worker_id) }),
      ]),
    ];
    if (a.error) parts.push(el("p", { class: "error", text: line(a.error) }));
    parts.push(el("div", { class: "output" }, outputs));
    return el("article", { class: running ? "attempt running" : "attempt", "data-attempt": a.attempt }, parts);
  }
  // A job's parents or children: links with their state; a pruned parent (no state) is gone.
  function related(jobs) {
    const shown = Number(document.getElementById("relatives").dataset.shown);
    const items = jobs.slice(0, shown).map(function (other) {
      if (other.state === null) return el("li", { "data-id": other.id }, [el("span", { class: "id", text: line(other.id) }), badge("pruned")]);
      const link = el("a", { class: "id", href: "/jobs/" + encodeURIComponent(other.id), text: line(other.id) });
      return el("li", { "data-id": other.id }, [link, badge(other.state)]);
    });
    if (!items.length) items.push(el("li", { class: "muted", text: "none" }));
    if (jobs.length > shown) items.push(el("li", { class: "muted", text: "and " + (jobs.length - shown) + " more" }));
    return items;
  }
  function relatives(data) {
    const waiting = document.getElementById("job-waiting");
    waiting.hidden = data.state !== "blocked";
    waiting.textContent = "waiting for " + data.unmet + " parent" + (data.unmet === 1 ? "" : "s");
    document.getElementById("relatives").hidden = !(data.parents.length || data.children.length);
    const rule = data.after_rule === "any" ? "runs once each one finished" : data.after_rule ? "runs once each one completed" : "";
    const parents = document.getElementById("parents");
    parents.replaceChildren.apply(parents, related(data.parents).concat([el("li", { class: "muted", id: "after-rule", text: rule })]));
    const children = document.getElementById("children");
    children.replaceChildren.apply(children, related(data.children));
  }
  async function jobPage() {
    const response = await fetch("/api/jobs/" + encodeURIComponent(job.dataset.id), { credentials: "same-origin" });
    if (!response.ok) return;
    const data = await response.json();
    const last = data.history[data.history.length - 1];
    const key = JSON.stringify([data.state, data.updated_at, data.history.length, last && last.finished_at, data.unmet, data.parents, data.children]);
    if (key === shownKey) return;
    shownKey = key;
    job.dataset.state = data.state;
    document.getElementById("job-state").replaceChildren(badge(data.state));
    relatives(data);
    const actions = document.getElementById("job-actions");
    actions.replaceChildren.apply(actions, jobActions(data));
    for (const dd of document.querySelectorAll("[data-field]")) {
      dd.textContent = fieldText(dd.dataset.field, data[dd.dataset.field]);
    }
    const list = document.getElementById("attempts");
    const nodes = data.history.slice().reverse().map(attemptNode);
    if (!nodes.length) nodes.push(el("p", { class: "empty", text: "Not run yet." }));
    if (!tail || !(last && last.finished_at === null)) list.replaceChildren.apply(list, nodes);
    followTail(data);
  }
  function followTail(data) {
    const running = data.state === "processing";
    if (!running || tail || document.visibilityState === "hidden") return;
    tail = new EventSource("/jobs/" + encodeURIComponent(data.id) + "/tail");
    const fresh = { stdout: true, stderr: true };
    tail.addEventListener("chunk", function (event) {
      const chunk = JSON.parse(event.data);
      const pre = document.querySelector('#attempts [data-live="' + chunk.stream + '"]');
      if (!pre) return;
      if (fresh[chunk.stream]) pre.textContent = "";
      fresh[chunk.stream] = false;
      pre.append(document.createTextNode(chunk.text));
    });
    tail.addEventListener("end", function () {
      tail.close();
      tail = null;
      shownKey = null;
      jobPage();
    });
    tail.onerror = function () { if (tail) { tail.close(); tail = null; } };
  }

  // -- the shared stream ----------------------------------------------------------------------

  let pending = null;
  function refresh() {
    // At most one reading of a page's own rows at a time, after the stream said it changed.
    if (pending) return;
    pending = (page === "jobs" ? listing() : page === "job" ? jobPage() : Promise.resolve())
      .catch(function () {})
      .finally(function () { pending = null; });
  }
  // A browser keeps 6 connections per host: a hidden page gives its streams back (the 7th
  // tab would wait for one) and opens them again, the latest reading at once, when shown.
  const liveBadge = document.getElementById("live");
  let first = true;
  let events = null;
  function onSnapshot(event) {
    const data = JSON.parse(event.data);
    liveBadge.textContent = "live";
    liveBadge.className = "live live-on";
    liveBadge.title = "Updated " + when(data.now) + " UTC";
    body.dataset.version = data.version;
    if (page === "overview") overview(data);
    else if (page === "jobs" && !document.getElementById("counts").dataset.scoped) fillCounts(data.status);
    if (page !== "overview" && !(first && page === "jobs")) refresh();
    if (first && page === "job") refresh();
    first = false;
  }
  function openEvents() {
    if (events) return;
    events = new EventSource("/events");
    events.addEventListener("snapshot", onSnapshot);
    events.onerror = function () {
      liveBadge.textContent = "reconnecting";
      liveBadge.className = "live live-off";
    };
  }
  function closeEvents() {
    if (events) { events.close(); events = null; }
    if (tail) { tail.close(); tail = null; }
    shownKey = null; // shown again in full (and its output followed) when visible
    liveBadge.textContent = "paused";
    liveBadge.className = "live live-off";
    liveBadge.title = "Not updated while the page is hidden";
  }
  document.addEventListener("visibilitychange", function () {
    if (document.visibilityState === "hidden") closeEvents();
    else openEvents();
  });
  // Leaving the page (or the server stopping): close the streams at once.
  window.addEventListener("pagehide", closeEvents);
  window.addEventListener("pageshow", function (event) { if (event.persisted) openEvents(); });
  if (document.visibilityState !== "hidden") openEvents();
  if (page === "job" && job.dataset.state === "processing" && events) followTail({ state: "processing", id: job.dataset.id });
})();
