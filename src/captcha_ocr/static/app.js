// The captcha-ocr page: drop, paste or choose images; each is sent to POST /v1/read
// as its raw bytes, and its card shows the text, the confidence, and every character
// shaded by its own confidence (red: unsure, green: sure).
"use strict";

const $ = (sel) => document.querySelector(sel);
const drop = $("#drop");
const input = $("#file");
const results = $("#results");
const status = $("#status");
const clearButton = $("#clear");
let pending = 0;

function pct(x) {
  return `${(100 * x).toFixed(1)}%`;
}

// Confidence in [0, 1] -> a background from red (0) through amber to green (1).
function shade(c) {
  const hue = Math.round(120 * Math.max(0, Math.min(1, c)));
  return `hsl(${hue} 75% 82%)`;
}

function updateStatus() {
  const n = results.children.length;
  status.textContent = pending ? `reading ${pending} of ${n}…` : n ? `${n} read` : "";
  clearButton.hidden = n === 0;
}

function newCard(file) {
  const card = $("#card").content.firstElementChild.cloneNode(true);
  const img = card.querySelector(".thumb");
  const url = URL.createObjectURL(file);
  img.src = url;
  img.alt = file.name || "pasted image";
  img.addEventListener("load", () => URL.revokeObjectURL(url), { once: true });
  img.addEventListener("error", () => {
    URL.revokeObjectURL(url);
    img.classList.add("broken");
  }, { once: true });
  card.querySelector(".name").textContent = file.name || "pasted image";
  card.querySelector(".text").textContent = "reading…";
  card.classList.add("pending");
  return card;
}

function showReading(card, r) {
  card.querySelector(".text").textContent = r.text || "(nothing read)";
  const chars = card.querySelector(".chars");
  chars.replaceChildren(...[...r.text].map((ch, i) => {
    const c = r.char_confidences[i] ?? 0;
    const span = document.createElement("span");
    span.className = "ch";
    span.style.background = shade(c);
    span.title = `${ch}: ${pct(c)}`;
    span.append(ch);
    const small = document.createElement("small");
    small.textContent = Math.round(100 * c);
    span.append(small);
    return span;
  }));
  const answer = r.answer !== undefined
    ? (r.answer === null ? ` · no answer (${r.answer_error})` : ` · answer ${r.answer}`) : "";
  const flag = r.accepted !== false ? "" : r.text ? " · LOW CONFIDENCE: fetch a new captcha"
    : " · NO READING: fetch a new captcha";
  card.querySelector(".meta").textContent =
    `confidence ${pct(r.confidence)}${answer}${flag} · ${r.ms.toFixed(1)} ms · ${r.model}`;
  card.classList.toggle("low", r.accepted === false);
  card.dataset.state = "done";
}

function showError(card, message) {
  card.querySelector(".text").textContent = "—";
  const box = card.querySelector(".error");
  box.textContent = message;
  box.hidden = false;
  card.dataset.state = "error";
}

// The reading options of the form, as the query string of POST /v1/read.
function optionQuery() {
  const q = new URLSearchParams();
  const allow = $("#allow").value.trim();
  if (allow) q.set("allow", allow);
  if ($("#length").value !== "") q.set("length", $("#length").value);
  if ($("#minconf").value !== "") q.set("min_confidence", $("#minconf").value);
  if ($("#solve").checked) q.set("solve", "true");
  const s = q.toString();
  return s ? `?${s}` : "";
}

async function readFile(file, card) {
  pending += 1;
  updateStatus();
  try {
    const response = await fetch("v1/read" + optionQuery(), {
      method: "POST",
      headers: { "Content-Type": file.type || "application/octet-stream" },
      body: file,
    });
    const body = await response.json().catch(() => ({ error: response.statusText }));
    if (response.ok) {
      showReading(card, body);
    } else {
      showError(card, `${response.status}: ${body.error || response.statusText}`);
    }
  } catch (e) {
    showError(card, `request failed: ${e.message}`);
  } finally {
    card.classList.remove("pending");
    pending -= 1;
    updateStatus();
  }
}

const isImage = (f) => f.type === "" || f.type.startsWith("image/");

function readFiles(files) {
  files = [...files];
  // The newest files go on top, in the order they were given; a file that is no image
  // (text.txt) gets its card with the reason, as the service fails one bad image alone.
  const cards = files.map(newCard);
  results.prepend(...cards);
  files.forEach((file, i) => {
    if (isImage(file)) {
      readFile(file, cards[i]);
    } else {
      cards[i].classList.remove("pending");
      showError(cards[i], `not an image (${file.type}): choose PNG, JPEG, GIF, BMP or WebP files`);
    }
  });
  updateStatus();
}

input.addEventListener("change", () => {
  readFiles(input.files);
  input.value = "";
});

drop.addEventListener("keydown", (e) => {
  if (e.key === "Enter" || e.key === " ") {
    e.preventDefault();
    input.click();
  }
});

for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (e) => {
    e.preventDefault();
    drop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) {
  drop.addEventListener(type, () => drop.classList.remove("over"));
}
drop.addEventListener("drop", (e) => {
  e.preventDefault();
  readFiles(e.dataTransfer.files);
});
// A file dropped outside the zone should not make the browser navigate away.
window.addEventListener("dragover", (e) => e.preventDefault());
window.addEventListener("drop", (e) => e.preventDefault());

document.addEventListener("paste", (e) => {
  const files = [...(e.clipboardData?.items || [])]
    .filter((item) => item.kind === "file")
    .map((item) => item.getAsFile())
    .filter(Boolean);
  if (files.length) {
    e.preventDefault();
    readFiles(files);
  }
});

clearButton.addEventListener("click", () => {
  results.replaceChildren();
  updateStatus();
});

async function showModel() {
  const el = $("#model");
  try {
    const response = await fetch("v1/model");
    const m = await response.json();
    const acc = m.metrics?.val_sequence_accuracy;
    el.textContent = `model ${m.name}: ${m.image.width}×${m.image.height}, ` +
      `alphabet “${m.alphabet}”` + (acc === undefined ? "" : `, validation accuracy ${pct(acc)}`);
  } catch (e) {
    el.textContent = `model info unavailable (${e.message})`;
  }
}

showModel();
