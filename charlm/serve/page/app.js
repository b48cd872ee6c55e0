// charlm serve's page: three views over the JSON / server-sent-event routes of charlm/serve/app.py.
// The numbers and unit colours come from the server; this script only lays them out.
"use strict";
const $ = (id) => document.getElementById(id);
let LIMITS = {}, MODELS = [];
const encoder = new TextEncoder();

function show(ch) { return ch === "\n" ? "\u23ce\n" : ch === "\t" ? "\u21e5" : ch; }
function surpriseColour(bits) {
  if (bits === null || bits === undefined) return "transparent";
  return `rgba(230,60,30,${Math.min(1, bits / 8).toFixed(2)})`;
}
function numberOrNull(id) { const v = $(id).value.trim(); return v === "" ? null : Number(v); }
// the first `limit` bytes of `text` as whole characters: what the server will take
function cut(text, limit) {
  if (encoder.encode(text).length <= limit) return [text, false];
  let out = "", n = 0;
  for (const ch of text) { n += encoder.encode(ch).length; if (n > limit) break; out += ch; }
  return [out, true];
}
async function postJSON(path, body, signal) {
  const r = await fetch(path, {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify(body), signal});
  const data = await r.json().catch(() => ({error: `the server answered ${r.status}`}));
  if (!r.ok) throw new Error(data.error || `the server answered ${r.status}`);
  return data;
}
function model() { return Number($("model").value || 0); }

// ---- views ----
document.querySelectorAll("nav button").forEach((b) => b.addEventListener("click", () => {
  document.querySelectorAll("nav button").forEach((x) => x.classList.toggle("on", x === b));
  document.querySelectorAll("section").forEach((s) => s.classList.toggle("on", s.id === b.dataset.view));
  if (b.dataset.view === "look") scheduleLook(0);
}));

// ---- Write ----
let running = [];
async function writeOne(temperature, seed, box) {
  const pre = box.querySelector("pre"), head = box.querySelector("h3");
  const controller = new AbortController();
  running.push(controller);
  const body = {model: model(), prompt: $("prompt").value, temperature, top_k: numberOrNull("top_k"),
                top_p: numberOrNull("top_p"), length: numberOrNull("length") ?? 500, seed};
  const t0 = performance.now();
  let first = null, bytes = 0, out = document.createElement("span");
  const p = document.createElement("span"); p.className = "p"; p.textContent = body.prompt;
  pre.append(p, out);
  try {
    const r = await fetch("/api/write", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify(body), signal: controller.signal});
    if (!r.ok) { const e = await r.json().catch(() => ({})); throw new Error(e.error || `the server answered ${r.status}`); }
    const reader = r.body.getReader(), decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const {value, done} = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, {stream: true});
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const block = buffer.slice(0, end); buffer = buffer.slice(end + 2);
        const event = (block.match(/^event: (.*)$/m) || [])[1], data = JSON.parse((block.match(/^data: (.*)$/m) || [])[1]);
        if (event === "start") head.dataset.seed = data.seed;
        if (event === "text") {
          if (first === null) first = performance.now() - t0;
          out.textContent += data.text; bytes += encoder.encode(data.text).length;
        }
        if (event === "error") throw new Error(data.error);
        const s = (performance.now() - t0) / 1000;
        head.textContent = `temperature ${temperature} \u00b7 seed ${head.dataset.seed} \u00b7 ${bytes} bytes, first after ` +
          `${(first ?? 0).toFixed(0)} ms, ${(bytes / Math.max(s, 1e-3)).toFixed(0)} bytes/s` + (event === "done" ? " \u00b7 done" : "");
      }
    }
  } catch (err) {
    if (err.name === "AbortError") head.textContent += " \u00b7 stopped";
    else $("write-error").textContent = err.message;
  } finally {
    running = running.filter((c) => c !== controller);
    box.dataset.state = "over";
    if (!running.length) { $("stop").disabled = true; $("generate").disabled = false; }
  }
}
$("generate").addEventListener("click", () => {
  $("write-error").textContent = "";
  const listed = $("temperatures").value.split(/[,\s]+/).filter((t) => t !== "").map(Number);
  const temps = listed.length ? listed : [Number($("temperature").value)];
  if (temps.some((t) => !Number.isFinite(t) || t < 0)) { $("write-error").textContent = "temperatures must be numbers >= 0"; return; }
  if (temps.length > (LIMITS.max_samples || 8)) {
    $("write-error").textContent = `at most ${LIMITS.max_samples} samples side by side`; return;
  }
  // one seed for every sample of this click (drawn here when the box is empty), so that side by side
  // the differences are the temperature's
  const seed = numberOrNull("seed") ?? Math.floor(Math.random() * 2 ** 31);
  $("samples").textContent = "";
  $("generate").disabled = true; $("stop").disabled = false;
  for (const t of temps) {
    const box = document.createElement("div"); box.className = "sample"; box.dataset.state = "running";
    box.innerHTML = `<h3>temperature ${t}</h3><pre></pre>`;
    $("samples").append(box);
    writeOne(t, seed, box);
  }
});
$("stop").addEventListener("click", () => running.forEach((c) => c.abort()));

// ---- Look inside ----
// One look at a time from this page: a newer one (typing, another unit) aborts the older, so the
// server skips it if it has not started yet; the view says it is working until the answer comes.
// Likewise one saliency (salientRequest): a newer click or a new look aborts it.
let look = null, lookTimer = null, lookRequest = null, selected = null, salientRequest = null;
function scheduleLook(delay = 250) { clearTimeout(lookTimer); lookTimer = setTimeout(runLook, delay); }
function stopSaliency() { if (salientRequest) salientRequest.abort(); salientRequest = null; }
async function runLook() {
  if (lookRequest) lookRequest.abort();
  stopSaliency();  // the new look redraws the view without it
  const controller = new AbortController();
  lookRequest = controller;
  const [text, cutShort] = cut($("look-text").value, LIMITS.max_look || 5000);
  const cutNote = cutShort ? `The text is longer than ${LIMITS.max_look.toLocaleString()} bytes: only its start is shown (the server's limit). ` : "";
  $("look-note").textContent = cutNote;
  $("look-busy").textContent = `reading ${encoder.encode(text).length.toLocaleString()} bytes\u2026`;
  $("look-out").classList.add("busy");
  try {
    const data = await postJSON("/api/look", {model: model(), text, state: $("look-state").value,
      layer: Number($("look-layer").value), unit: Number($("look-unit").value)}, controller.signal);
    $("look-error").textContent = "";
    $("look-note").textContent = cutNote + (data.note || "");
    look = {...data, text}; selected = null;
    $("look-bpc").textContent = data.bpc === null ? "" : `${data.bpc} bits per byte over this text`;
    drawLook(); drawRanking();
  } catch (err) {
    if (err.name !== "AbortError") $("look-error").textContent = err.message;
  } finally {
    if (lookRequest === controller) {  // the latest look is over: nothing is being read
      lookRequest = null; $("look-busy").textContent = ""; $("look-out").classList.remove("busy");
    }
  }
}
function drawLook(saliency) {
  const out = $("look-out"); out.textContent = "";
  if (!look) return;
  const bySurprise = $("colour-by").value === "surprise";
  let max = 0;
  if (saliency) max = Math.max(1e-12, ...saliency.scores);
  look.chars.forEach((ch, t) => {
    if (!ch) return;  // inner byte of a multi-byte character: shown with its first byte
    const span = document.createElement("span");
    span.className = "ch"; span.dataset.t = t; span.textContent = show(ch);
    let colour = bySurprise ? surpriseColour(look.surprise[t]) : look.colours[t];
    if (saliency) {
      const i = t - saliency.start;
      colour = i >= 0 && i < saliency.scores.length ? `rgba(40,170,60,${(saliency.scores[i] / max).toFixed(2)})` : "transparent";
      if (t === selected) span.classList.add("sel");
    }
    span.style.background = colour;
    out.append(span);
  });
}
function drawRanking() {
  const table = $("ranking");
  table.innerHTML = "<tr><th>feature</th><th>state</th><th>layer</th><th>unit</th><th>r</th></tr>";
  for (const r of look.ranking) {
    const tr = document.createElement("tr"); tr.className = "pick";
    for (const v of [r.feature, r.state, r.layer, r.unit, r.r.toFixed(3)]) {
      const td = document.createElement("td"); td.textContent = v; tr.append(td);
    }
    tr.addEventListener("click", () => {
      $("look-state").value = r.state; $("look-layer").value = r.layer; $("look-unit").value = r.unit;
      $("colour-by").value = "unit"; scheduleLook(0);
    });
    table.append(tr);
  }
}
$("look-text").addEventListener("input", () => scheduleLook());
for (const id of ["look-state", "look-layer", "look-unit"]) $(id).addEventListener("input", () => scheduleLook(100));
$("colour-by").addEventListener("change", () => drawLook());
$("look-out").addEventListener("mousemove", (e) => {
  const t = e.target.dataset && e.target.dataset.t, tip = $("tip");
  if (t === undefined || !look) { tip.style.display = "none"; return; }
  const i = Number(t), s = look.surprise[i];
  let html = `<b>${escapeHTML(JSON.stringify(look.chars[i]))}</b> unit ${look.values[i].toFixed(3)}` +
             (s === null ? "" : ` \u00b7 surprise ${s.toFixed(2)} bits`) + "<br>next:";
  for (const [g, p] of look.top[i]) {
    html += `<br>${escapeHTML(JSON.stringify(g).padEnd(6))} ${(100 * p).toFixed(1).padStart(5)}%<span class="bar" style="width:${(80 * p).toFixed(0)}px"></span>`;
  }
  tip.innerHTML = html; tip.style.display = "block";
  tip.style.left = `${Math.min(e.clientX + 14, innerWidth - 220)}px`; tip.style.top = `${e.clientY + 14}px`;
});
$("look-out").addEventListener("mouseleave", () => { $("tip").style.display = "none"; });
// A click aborts the saliency still under way (the server skips it if it has not started); an answer for a
// text the view no longer shows is dropped.
$("look-out").addEventListener("click", async (e) => {
  const t = e.target.dataset && e.target.dataset.t;
  if (t === undefined || !look) return;
  stopSaliency();
  if (selected === Number(t)) { selected = null; drawLook(); return; }
  selected = Number(t);
  const controller = new AbortController(), text = look.text;
  salientRequest = controller;
  try {
    const data = await postJSON("/api/saliency", {model: model(), text, position: selected}, controller.signal);
    if (salientRequest !== controller || !look || look.text !== text) return;  // another click, or another text
    $("look-error").textContent = "";
    drawLook(data);
    $("look-note").textContent = `Saliency of the guess after this character (the actual next one, ` +
      `${JSON.stringify(data.target)}, had p = ${data.p}): green = how much each earlier character mattered.`;
  } catch (err) {
    if (err.name !== "AbortError" && salientRequest === controller) { $("look-error").textContent = err.message; selected = null; }
  } finally {
    if (salientRequest === controller) salientRequest = null;
  }
});
function escapeHTML(s) { return s.replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }

// ---- Who wrote this ----
$("who-run").addEventListener("click", async () => {
  $("who-error").textContent = ""; $("verdict").textContent = ""; $("who-out").textContent = "";
  const [text, cutShort] = cut($("who-text").value, LIMITS.max_compare || 20000);
  $("who-note").textContent = cutShort ? `The passage is longer than ${LIMITS.max_compare.toLocaleString()} bytes: only its start is scored (the server's limit).` : "";
  $("who-run").disabled = true;
  try {
    const data = await postJSON("/api/compare", {text});
    if (data.notes.length) $("who-note").textContent += " " + data.notes.join("; ");
    const v = data.verdict;
    let html = `Most likely: <b>${escapeHTML(v.name)}</b> (${v.bpc.toFixed(4)} bits per byte over ${v.count.toLocaleString()} bytes)`;
    for (const o of v.others) {
      html += `<br>&nbsp;&nbsp;${escapeHTML(o.name)}: ${o.bpc.toFixed(4)} bpc (+${o.margin.toFixed(4)}, ${o.bytes_more.toLocaleString()} bytes more to encode)`;
    }
    $("verdict").innerHTML = html;
    for (const s of data.scores) {
      const row = document.createElement("div"); row.className = "row";
      row.innerHTML = `<h3>${escapeHTML(s.name)}: ${s.bpc.toFixed(4)} bits per byte</h3>`;
      const box = document.createElement("div"); box.className = "text";
      data.chars.forEach((ch, t) => {
        if (!ch) return;
        const span = document.createElement("span"); span.className = "ch"; span.textContent = show(ch);
        span.style.background = surpriseColour(s.surprise[t]);
        span.title = s.surprise[t] === null ? "first byte: context only" : `${s.surprise[t].toFixed(2)} bits`;
        box.append(span);
      });
      row.append(box); $("who-out").append(row);
    }
  } catch (err) { $("who-error").textContent = err.message; }
  finally { $("who-run").disabled = false; }
});

// ---- start ----
// The models and limits, or an Error saying why not (the server gone, or refusing: its message).
async function loadModels() {
  let r;
  try { r = await fetch("/api/models"); } catch (err) {
    throw new Error(`could not reach charlm serve (${err.message}). Is it still running? Start it again, then reload this page.`);
  }
  const data = await r.json().catch(() => null);
  if (!r.ok || !data || !Array.isArray(data.models)) {
    throw new Error(`charlm serve refused the list of models (${(data && data.error) || `it answered ${r.status}`}). ` +
                    "Reload this page to try again.");
  }
  return data;
}
(async () => {
  let data;
  try { data = await loadModels(); } catch (err) {
    $("start-error").textContent = `No models to use: ${err.message}`;
    document.querySelectorAll("button.go").forEach((b) => { b.disabled = true; });
    document.body.dataset.ready = "failed";
    return;
  }
  MODELS = data.models; LIMITS = data.limits;
  for (const [i, m] of MODELS.entries()) {
    const o = document.createElement("option"); o.value = i;
    o.textContent = `${m.name} (${m.cell} ${m.layers}x${m.hidden_size})`; $("model").append(o);
  }
  $("limits").textContent = `limits: prompt ${LIMITS.max_prompt.toLocaleString()} B, sample ${LIMITS.max_length.toLocaleString()} B, ` +
    `${LIMITS.max_generations} samples at once, Look inside ${LIMITS.max_look.toLocaleString()} B, compare ${LIMITS.max_compare.toLocaleString()} B`;
  document.querySelectorAll(".win").forEach((e) => { e.textContent = LIMITS.saliency_window; });
  if (MODELS.length < 2) {
    $("who-run").disabled = true;
    $("who-note").textContent = "Start charlm serve with two or more --ckpt_path to compare models.";
  }
  const setStates = () => {
    const m = MODELS[model()];
    $("look-state").innerHTML = m.states.map((s) => `<option>${s}</option>`).join("");
    $("look-unit").max = m.hidden_size - 1;
  };
  setStates();
  $("model").addEventListener("change", () => { setStates(); scheduleLook(0); });
  document.body.dataset.ready = "1";
})();
