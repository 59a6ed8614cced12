// captcha-ocr label: one image at a time, the model's reading pre-filled and selected.
// Enter accepts (saved at once by POST /api/label); Alt+Left goes back, Alt+Right skips,
// Alt+U marks the image unreadable. The server keeps the queue: a reload continues.
"use strict";

const $ = (sel) => document.querySelector(sel);
const input = $("#label");
let queue = [];         // names still to do, in the server's order
let history = [];       // names shown before the current one (for Back)
let current = null;     // {name, label, status, reading}

function shade(c) {
  const hue = Math.round(120 * Math.max(0, Math.min(1, c)));
  return `hsl(${hue} 75% 82%)`;
}

function say(message) {
  const box = $("#message");
  box.textContent = message || "";
  box.hidden = !message;
}

async function api(path, body) {
  const response = await fetch(path, body === undefined ? {} : {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
  });
  const data = await response.json().catch(() => ({ error: response.statusText }));
  if (!response.ok) throw new Error(data.error || response.statusText);
  return data;
}

function showProgress(s) {
  const done = s.labeled + s.skipped + s.unreadable;
  $("#progress").textContent =
    `${s.labeled} labeled / ${s.total} · ${s.skipped} skipped · ${s.unreadable} unreadable · ` +
    `${s.remaining} to go · ${s.labels_per_minute} labels/min · ` +
    `${s.accepted_unchanged} of ${s.session_labels} accepted unchanged · ` +
    `order: ${s.order}` + (s.model ? ` · model ${s.model}` : " · no model");
  $("#progress").dataset.done = String(done);
}

async function show(name) {
  current = await api(`/api/item/${encodeURIComponent(name)}`);
  $("#image").src = `/api/image/${encodeURIComponent(name)}`;
  $("#name").textContent = name + (current.status ? ` (${current.status})` : "");
  const r = current.reading;
  const prefill = current.label ?? (r && !r.error ? r.text : "");
  $("#chars").replaceChildren(...(r && !r.error ? [...r.text].map((ch, i) => {
    const span = document.createElement("span");
    span.className = "ch";
    span.style.background = shade(r.char_confidences[i] ?? 0);
    span.textContent = ch;
    return span;
  }) : []));
  const sug = current.suggestion;
  say(sug ? `check-labels read it as “${sug.text}” (confidence ${sug.confidence.toFixed(2)}): ` +
            "correct the label, or keep it if the image shows it"
      : r && r.error ? `the model could not read it: ${r.error}` : "");
  input.value = prefill;
  input.dataset.prefill = prefill;  // what the box showed: kept as is, it counts as accepted unchanged
  input.focus();
  input.select();
}

async function next() {
  const state = await api("/api/state");
  showProgress(state);
  while (queue.length && queue[0] === current?.name) queue.shift();
  if (!queue.length) queue = (await api("/api/queue")).queue.filter((n) => n !== current?.name);
  if (!queue.length) {
    current = null;
    $("#form").hidden = true;
    if (state.order === "review") {
      $("#done").textContent = "Every listed image is reviewed. Labels are in labels.csv.";
    }
    $("#done").hidden = false;
    return;
  }
  if (current) history.push(current.name);
  await show(queue.shift());
}

async function accept() {
  if (!current) return;
  try {
    const s = await api("/api/label", { name: current.name, label: input.value,
                                        prefill: input.dataset.prefill || null });
    showProgress(s);
    await next();
  } catch (e) { say(e.message); }
}

async function setAside(status) {
  if (!current) return;
  try {
    showProgress(await api("/api/set-aside", { name: current.name, status }));
    await next();
  } catch (e) { say(e.message); }
}

async function back() {
  if (!history.length) return;
  if (current) queue.unshift(current.name);
  await show(history.pop());
}

async function followTraining() {
  const log = $("#train-log");
  log.hidden = false;
  for (;;) {
    const t = await api("/api/train");
    log.textContent = t.lines.join("\n") + (t.result ? `\n${t.result}` : "");
    if (!t.running) {
      $("#train").disabled = false;
      input.focus();  // back to typing
      input.select();
      if (t.result === "done") {   // the new model ranked the images again
        queue = (await api("/api/queue")).queue.filter((n) => n !== current?.name);
        showProgress(await api("/api/state"));
      }
      return;
    }
    await new Promise((r) => setTimeout(r, 1000));
  }
}

$("#train").addEventListener("click", async () => {
  try {
    $("#train").disabled = true;
    await api("/api/train", {});
    await followTraining();
  } catch (e) {
    $("#train").disabled = false;
    say(e.message);
  }
});

$("#form").addEventListener("submit", (e) => { e.preventDefault(); accept(); });
$("#back").addEventListener("click", back);
$("#skip").addEventListener("click", () => setAside("skipped"));
$("#unreadable").addEventListener("click", () => setAside("unreadable"));
document.addEventListener("keydown", (e) => {
  if (!e.altKey) return;
  if (e.key === "ArrowLeft") { e.preventDefault(); back(); }
  else if (e.key === "ArrowRight") { e.preventDefault(); setAside("skipped"); }
  else if (e.key === "u" || e.key === "U") { e.preventDefault(); setAside("unreadable"); }
});

(async () => {
  try {
    queue = (await api("/api/queue")).queue;
    current = null;
    await next();
  } catch (e) { say(e.message); }
})();
