// audiorep serve: the page. Plain JS, no framework; talks to audiorep/serve/server.py.
"use strict";

const $ = (id) => document.getElementById(id);

// Magma-like colour map, the same anchors as audiorep/serve/images.py (MAGMA_ANCHORS).
const MAGMA = [
  [0.0, [0, 0, 4]], [0.125, [28, 16, 68]], [0.25, [79, 18, 123]], [0.375, [129, 37, 129]],
  [0.5, [181, 54, 122]], [0.625, [229, 80, 100]], [0.75, [251, 135, 97]],
  [0.875, [254, 194, 135]], [1.0, [252, 253, 191]],
];
const LUT = (() => {
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const x = i / 255;
    let k = 0;
    while (k < MAGMA.length - 2 && MAGMA[k + 1][0] < x) k++;
    const [p0, c0] = MAGMA[k];
    const [p1, c1] = MAGMA[k + 1];
    const t = Math.min(1, Math.max(0, (x - p0) / (p1 - p0)));
    for (let c = 0; c < 3; c++) lut[3 * i + c] = Math.round(c0[c] + t * (c1[c] - c0[c]));
  }
  return lut;
})();

// One colour per code index (images.py: code_colours): golden-ratio hues.
function codeColour(i) {
  const h = (i * 0.6180339887498949) % 1, s = 0.55, v = 0.95;
  return [5, 3, 1].map((n) => {
    const k = (n + h * 6) % 6;
    return Math.round(255 * (v - v * s * Math.max(0, Math.min(k, 4 - k, 1))));
  });
}

// What the browser test reads: counts of streamed events and draws.
const state = {
  progressEvents: 0, spectrogramEvents: 0, attentionDraws: 0, attentionPrints: [], status: "idle",
  job: null, source: null, model: null, uploads: new WeakMap(), info: null,
};
window.audiorepState = state;

function setStatus(text, error = false) {
  const el = $("status");
  el.textContent = text;
  el.classList.toggle("error", error);
}

async function api(path, body) {
  const opts = body === undefined ? {} : {
    method: "POST",
    headers: { "X-Audiorep": "1", "Content-Type": "application/json" },
    body: JSON.stringify(body),
  };
  const res = await fetch(path, opts);
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  return data;
}

async function upload(file) {
  if (state.uploads.has(file)) return state.uploads.get(file);
  setStatus(`uploading ${file.name} …`);
  const res = await fetch(`/api/upload?name=${encodeURIComponent(file.name)}`, {
    method: "POST", headers: { "X-Audiorep": "1" }, body: file,
  });
  const data = await res.json().catch(() => ({ error: `HTTP ${res.status}` }));
  if (!res.ok) throw new Error(data.error || `HTTP ${res.status}`);
  state.uploads.set(file, data);
  return data;
}

function b64bytes(text) {
  const bin = atob(text);
  const out = new Uint8Array(bin.length);
  for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
  return out;
}

// ------------------------------------------------------------------ settings <-> URL

const SETTINGS = ["temperature", "top_k", "top_p", "seed", "width_scale"];

function currentSettings() {
  const s = { model: $("model").value, cond: condMode(), class: $("class").value };
  for (const k of SETTINGS) s[k] = $(k).value;
  s.prime = $("prime").checked ? "1" : "";
  return s;
}

function saveUrl() {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(currentSettings())) if (v !== "" && v != null) q.set(k, v);
  history.replaceState(null, "", `${location.pathname}?${q}`);
}

function restoreUrl() {
  const q = new URLSearchParams(location.search);
  for (const k of SETTINGS) if (q.has(k)) $(k).value = q.get(k);
  $("prime").checked = q.get("prime") === "1";
  return { model: q.get("model"), cond: q.get("cond"), cls: q.get("class") };
}

function condMode() {
  const el = document.querySelector('input[name="cond"]:checked');
  return el ? el.value : "";
}

// ------------------------------------------------------------------ models

async function loadModel(name, wanted = {}) {
  setStatus(`loading model ${name} …`);
  $("sample-run").disabled = true;
  try {
    const m = await api(`/api/model?name=${encodeURIComponent(name)}`);
    state.model = m;
    const feats = m.kind === "class" ? "" : `, ${m.feat_sample_size} feature frame(s)`;
    $("model-info").textContent = `${m.kind}-conditioned, ${m.n_codes} codes${feats}`;
    const sel = $("class");
    sel.replaceChildren(...(m.classes || []).map((c) => new Option(c, c)));
    if (wanted.cls && (m.classes || []).includes(wanted.cls)) sel.value = wanted.cls;
    const byClass = m.kind === "class";
    $("cond-class").disabled = !m.classes;
    $("cond-features").disabled = byClass;
    $("cond-video").disabled = byClass;
    const modes = byClass ? ["class"] : ["features", "video"];
    const mode = modes.includes(wanted.cond) ? wanted.cond : modes[0];
    $(`cond-${mode}`).checked = true;
    if (!$("top_k").value) $("top_k").placeholder = `${Math.floor(m.n_codes / 2)}`;
    setStatus(`model ${name} ready`);
    $("sample-run").disabled = false;
  } catch (err) {
    state.model = null;
    $("model-info").textContent = "";
    setStatus(err.message, true);
  }
  saveUrl();
}

// ------------------------------------------------------------------ drawing

function drawSpectrogram(ev) {
  const canvas = $("spec-canvas");
  const width = ev.total_columns * 16;
  if (canvas.width !== width || canvas.height !== ev.bands) {
    canvas.width = width;
    canvas.height = ev.bands;
  }
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#000004";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  const data = b64bytes(ev.data);
  const img = ctx.createImageData(ev.frames, ev.bands);
  for (let b = 0; b < ev.bands; b++) {
    const y = ev.bands - 1 - b; // low bands at the bottom
    for (let t = 0; t < ev.frames; t++) {
      const v = data[b * ev.frames + t], o = 4 * (y * ev.frames + t);
      img.data[o] = LUT[3 * v]; img.data[o + 1] = LUT[3 * v + 1]; img.data[o + 2] = LUT[3 * v + 2];
      img.data[o + 3] = 255;
    }
  }
  ctx.putImageData(img, 0, 0);
}

function drawCodes(tokens, rows, totalColumns) {
  const canvas = $("codes-canvas");
  const cell = 8;
  if (canvas.width !== totalColumns * cell) canvas.width = totalColumns * cell;
  canvas.height = rows * cell;
  const ctx = canvas.getContext("2d");
  ctx.fillStyle = "#18181c";
  ctx.fillRect(0, 0, canvas.width, canvas.height);
  tokens.forEach((code, i) => {
    const col = Math.floor(i / rows), row = i % rows;
    const [r, g, b] = codeColour(code);
    ctx.fillStyle = `rgb(${r},${g},${b})`;
    ctx.fillRect(col * cell + 1, (rows - 1 - row) * cell, cell - 1, cell);
  });
}

function drawAttention(att) {
  const canvas = $("attention-canvas");
  canvas.width = att.keys;
  canvas.height = att.heads;
  const ctx = canvas.getContext("2d");
  const data = b64bytes(att.data);
  const img = ctx.createImageData(att.keys, att.heads);
  for (let i = 0; i < data.length; i++) {
    const v = data[i];
    img.data[4 * i] = LUT[3 * v]; img.data[4 * i + 1] = LUT[3 * v + 1];
    img.data[4 * i + 2] = LUT[3 * v + 2]; img.data[4 * i + 3] = 255;
  }
  ctx.putImageData(img, 0, 0);
  if (att.condition_length > 0 && att.condition_length < att.keys) {
    ctx.fillStyle = "#3ce0c8";
    ctx.fillRect(att.condition_length, 0, 1, att.heads);
  }
  state.attentionDraws++;
  // a fingerprint of each drawn row (the browser test checks that they change)
  let sum = 0;
  for (let i = 0; i < data.length; i++) sum = (sum * 31 + data[i]) % 1000000007;
  if (state.attentionPrints.length < 2000) state.attentionPrints.push(`${att.keys}:${sum}`);
}

function predictionsTable(title, preds) {
  const table = document.createElement("table");
  table.createCaption().textContent = title;
  for (const p of preds) {
    const tr = table.insertRow();
    tr.insertCell().textContent = p.label;
    tr.insertCell().textContent = `${(100 * p.p).toFixed(1)}%`;
    const bar = tr.insertCell();
    bar.className = "bar";
    const fill = document.createElement("div");
    fill.className = "fill";
    fill.style.width = `${Math.max(1, 100 * p.p)}%`;
    bar.append(fill);
  }
  return table;
}

function showPredictions(el, groups) {
  el.replaceChildren();
  if (!state.info.judge.configured) return;
  for (const [title, preds] of groups) if (preds) el.append(predictionsTable(title, preds));
}

// ------------------------------------------------------------------ codec round trip

async function runCodec() {
  const file = $("codec-file").files[0];
  if (!file) { setStatus("pick an audio file for the codec round trip", true); return; }
  $("codec-run").disabled = true;
  try {
    const up = await upload(file);
    setStatus(`encoding and decoding ${file.name} …`);
    const r = await api("/api/codec", { upload: up.id });
    $("codec-summary").textContent =
      `${r.input}: ${r.seconds.toFixed(2)} s → ${r.grid[0]}×${r.grid[1]} codes × ${r.bits_per_code} bits` +
      ` = ${r.kbps.toFixed(3)} kbps (${r.bytes} bytes); mel L1 ${r.mel_l1.toFixed(4)};` +
      ` codec ${r.codec}, vocoder ${r.vocoder}`;
    $("codes-img").src = r.files.codes_png;
    $("audio-original").src = r.files.original;
    $("audio-reconstruction").src = r.files.reconstruction;
    $("audio-vocoded").src = r.files.original_vocoded;
    $("orig-spec").src = r.files.original_png;
    $("rec-spec").src = r.files.reconstruction_png;
    $("dl-rec").href = `${r.files.reconstruction}?download=1`;
    $("dl-codes").href = `${r.files.codes}?download=1`;
    $("dl-codec-npz").href = `${r.files.npz}?download=1`;
    $("dl-codec-png").href = `${r.files.reconstruction_png}?download=1`;
    const p = r.predictions || {};
    showPredictions($("codec-predictions"), [
      ["original: top-10", p.original], ["reconstruction: top-10", p.reconstruction]]);
    $("codec-result").hidden = false;
    setStatus(`codec round trip done in ${r.elapsed_s.toFixed(1)} s`);
  } catch (err) {
    setStatus(err.message, true);
  } finally {
    $("codec-run").disabled = false;
  }
}

function toggleAB() {
  const a = $("audio-original"), b = $("audio-reconstruction");
  const fromA = $("ab-toggle").dataset.side !== "B";
  const [from, to] = fromA ? [a, b] : [b, a];
  const playing = !from.paused;
  to.currentTime = Math.min(from.currentTime, to.duration || from.currentTime);
  from.pause();
  if (playing) to.play();
  $("ab-toggle").dataset.side = fromA ? "B" : "A";
  $("ab-toggle").textContent = fromA ? "A/B: reconstruction" : "A/B: original";
}

// ------------------------------------------------------------------ sampling

async function runSample() {
  if (!state.model) { setStatus("pick a model first", true); return; }
  const s = currentSettings();
  const body = {
    model: s.model, condition: s.cond, class: s.class, temperature: s.temperature,
    top_k: s.top_k || Math.floor(state.model.n_codes / 2), top_p: s.top_p, seed: s.seed,
    prime: $("prime").checked, width_scale: s.width_scale,
  };
  $("sample-run").disabled = true;
  try {
    const files = { features: "features-file", flow: "flow-file", video: "video-file", audio: "gt-file" };
    for (const [key, id] of Object.entries(files)) {
      const f = $(id).files[0];
      if (f && (key === "audio" || key === "flow" || key === s.cond)) body[key] = (await upload(f)).id;
    }
    const { job } = await api("/api/sample", body);
    follow(job);
  } catch (err) {
    setStatus(err.message, true);
    $("sample-run").disabled = false;
  }
}

function follow(jobId) {
  state.job = jobId;
  state.status = "queued";
  $("sample-cancel").disabled = false;
  $("sample-result").hidden = true;
  $("sample-progress").value = 0;
  const es = new EventSource(`/api/jobs/${jobId}/events`);
  state.source = es;
  const finish = () => {
    es.close();
    $("sample-cancel").disabled = true;
    $("sample-run").disabled = false;
  };
  es.addEventListener("status", (e) => {
    const d = JSON.parse(e.data);
    state.status = d.status;
    if (d.message) setStatus(d.message);
  });
  es.addEventListener("progress", (e) => {
    const d = JSON.parse(e.data);
    state.progressEvents++;
    state.lastStep = d.step;
    $("sample-progress").value = (d.step + 1) / d.total;
    const rate = d.elapsed_s > 0 ? ` (${((d.step + 1) / d.elapsed_s).toFixed(0)} codes/s)` : "";
    $("sample-step").textContent = `step ${d.step + 1} / ${d.total}, ${d.elapsed_s.toFixed(1)} s${rate}`;
    drawCodes(d.tokens, d.rows, d.total / d.rows);
    if (d.attention) drawAttention(d.attention);
  });
  es.addEventListener("spectrogram", (e) => {
    state.spectrogramEvents++;
    drawSpectrogram(JSON.parse(e.data));
  });
  es.addEventListener("done", (e) => {
    const r = JSON.parse(e.data);
    state.status = "done";
    state.result = r;
    $("sample-audio").src = r.files.wav;
    $("dl-wav").href = `${r.files.wav}?download=1`;
    $("dl-npz").href = `${r.files.npz}?download=1`;
    $("dl-png").href = `${r.files.png}?download=1`;
    $("sample-summary").textContent =
      `${r.model}, seed ${r.seed}: ${r.seconds.toFixed(2)} s of audio, ${r.grid[0]}×${r.grid[1]} codes,` +
      ` ${r.elapsed_s.toFixed(1)} s`;
    showPredictions($("sample-predictions"), [["top-10", r.predictions]]);
    $("sample-result").hidden = false;
    setStatus("sampling done");
    finish();
  });
  es.addEventListener("failed", (e) => {
    state.status = "failed";
    setStatus(JSON.parse(e.data).message, true);
    finish();
  });
  es.addEventListener("cancelled", () => {
    state.status = "cancelled";
    setStatus("sampling cancelled");
    finish();
  });
}

async function cancelSample() {
  if (!state.job) return;
  try {
    await api(`/api/jobs/${state.job}/cancel`, {});
    // the job's own "cancelled" event may already have arrived: do not overwrite it
    if (state.status === "running") setStatus("cancelling …");
  } catch (err) {
    setStatus(err.message, true);
  }
}

// ------------------------------------------------------------------ start

async function start() {
  const wanted = restoreUrl();
  try {
    state.info = await api("/api/info");
  } catch (err) {
    setStatus(`cannot reach the server: ${err.message}`, true);
    return;
  }
  const info = state.info;
  $("version").textContent = `audiorep ${info.version}`;
  const sel = $("model");
  sel.replaceChildren(...info.models.map((m) => {
    const o = new Option(m.name, m.name);
    o.title = m.description;
    return o;
  }));
  const names = info.models.map((m) => m.name);
  sel.value = wanted.model && names.includes(wanted.model) ? wanted.model : info.default_model;
  $("judge-note").textContent = info.judge.configured
    ? (info.judge.error ? `judge: ${info.judge.error}` : `predictions: ${info.judge.name}`)
    : "No judge configured: start `audiorep serve --judge PATH` (a judge .safetensors or " +
      "Melception weights) to see top-10 class predictions.";
  sel.addEventListener("change", () => loadModel(sel.value));
  for (const el of document.querySelectorAll("#settings input, #settings select, #class, input[name=cond]")) {
    el.addEventListener("change", saveUrl);
  }
  $("codec-run").addEventListener("click", runCodec);
  $("ab-toggle").addEventListener("click", toggleAB);
  $("sample-run").addEventListener("click", runSample);
  $("sample-cancel").addEventListener("click", cancelSample);
  document.body.dataset.ready = "1";
  await loadModel(sel.value, wanted);
}

start();
