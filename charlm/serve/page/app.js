// charlm serve's page: three views over the JSON / server-sent-event routes of charlm/serve/app.py.
// The numbers and unit colours come from the server; this script lays them out, and says in words when the
// server is gone. Everything works by keyboard (Tab, arrows, Enter, Ctrl+Enter) and by touch (a tap shows the
// guesses; saliency has its own button there).
"use strict";
const $ = (id) => document.getElementById(id);
let LIMITS = {}, MODELS = [];
const encoder = new TextEncoder();
const STOPPED = "charlm serve stopped \u2014 restart it and reload this page.";

function show(ch) { return ch === "\n" ? "\u23ce\n" : ch === "\t" ? "\u21e5" : ch; }
function surpriseColour(bits) {
  if (bits === null || bits === undefined) return "transparent";
  return `rgba(230,60,30,${Math.min(1, bits / 8).toFixed(2)})`;
}
function numberOrNull(id) { const v = $(id).value.trim(); return v === "" ? null : Number(v); }
function escapeHTML(s) { return s.replace(/[&<>"]/g, (c) => ({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"}[c])); }
// the first `limit` bytes of `text` as whole characters: what the server will take
function cut(text, limit) {
  if (encoder.encode(text).length <= limit) return [text, false];
  let out = "", n = 0;
  for (const ch of text) { n += encoder.encode(ch).length; if (n > limit) break; out += ch; }
  return [out, true];
}
function model() { return Number($("model").value || 0); }
function view() { return document.querySelector(".tabs button.on").dataset.view; }

// ---- the server ----
// A request that cannot reach the server (not an abort), or its 503 while stopping, means it is gone: one banner
// says so in words, the results stay but dimmed, and the buttons that need it are disabled.
class Gone extends Error { constructor() { super(STOPPED); this.name = "Gone"; } }
function serverGone() {
  if (document.body.dataset.server === "gone") return;
  document.body.dataset.server = "gone";
  $("server-gone").textContent = `${STOPPED} What the page shows is from before it stopped.`;
  $("server-gone").hidden = false;
  for (const id of ["generate", "stop", "who-run"]) $(id).disabled = true;
}
async function alive() {
  try { return (await fetch("/api/status", {cache: "no-store"})).ok; } catch { return false; }
}
async function reach(path, options) {
  try { return await fetch(path, options); } catch (err) {
    if (err.name === "AbortError") throw err;
    serverGone();
    throw new Gone();
  }
}
async function postJSON(path, body, signal) {
  const r = await reach(path, {method: "POST", headers: {"Content-Type": "application/json"},
                               body: JSON.stringify(body), signal});
  let data = null;
  try { data = await r.json(); } catch (err) { if (err.name === "AbortError") throw err; }
  if (r.status === 503) { serverGone(); throw new Gone(); }
  if (!r.ok) throw new Error((data && data.error) || `the server answered ${r.status}`);
  if (data === null) {  // the answer was cut short: the server died while sending it, or the network failed
    if (!(await alive())) { serverGone(); throw new Gone(); }
    throw new Error("the server's answer was cut short; try again.");
  }
  return data;
}

// ---- views ----
const TABS = [...document.querySelectorAll(".tabs button")];
function switchTo(button) {
  for (const b of TABS) { b.classList.toggle("on", b === button); b.setAttribute("aria-selected", b === button); }
  document.querySelectorAll(".view").forEach((s) => s.classList.toggle("on", s.id === button.dataset.view));
  hideTip();
  if (button.dataset.view === "look") scheduleLook(0);
}
TABS.forEach((b, i) => {
  b.addEventListener("click", () => switchTo(b));
  b.addEventListener("keydown", (e) => {  // arrows between the tabs, as in any tab list
    const step = {ArrowRight: 1, ArrowLeft: -1}[e.key];
    if (step) { const next = TABS[(i + step + TABS.length) % TABS.length]; next.focus(); switchTo(next); }
  });
});
document.addEventListener("keydown", (e) => {  // Ctrl+Enter (Cmd+Enter) runs the view's main action
  if (e.key !== "Enter" || !(e.ctrlKey || e.metaKey)) return;
  if (view() === "write") { e.preventDefault(); generate(); }
  if (view() === "who") { e.preventDefault(); runWho(); }
});

// ---- Write ----
let running = [], autoPrompt = null;
function listedTemperatures() { return $("temperatures").value.split(/[,\s]+/).filter((t) => t !== ""); }
// "side by side at" replaces the single temperature: the box is disabled and the rule said beside it
function showTemperatureRule() {
  const listed = listedTemperatures();
  $("temperature").disabled = listed.length > 0;
  $("temperature-rule").hidden = !listed.length;
  $("temperature-rule").textContent = listed.length ? `One sample at each of ${listed.join(", ")}: the single ` +
    "temperature box is not used while \u201cside by side at\u201d has values (empty it to use it)." : "";
}
$("temperatures").addEventListener("input", showTemperatureRule);

function sampleCard(temperature, seed) {
  const box = document.createElement("article");
  box.className = "card sample"; box.dataset.state = "running";
  box.innerHTML = '<h3><span class="what"></span> \u00b7 <span class="badge running">writing</span></h3>' +
                  '<pre></pre><div class="why" hidden></div><div class="stats"></div>';
  box.querySelector(".what").textContent = `temperature ${temperature} \u00b7 seed ${seed}`;
  return box;
}
// how a card ends: done, stopped (Stop), interrupted (the server went, or the stream broke) or error
function endCard(box, state, why) {
  const badge = box.querySelector(".badge");
  badge.className = `badge ${state}`; badge.textContent = state;
  box.dataset.end = state;
  if (why) { const w = box.querySelector(".why"); w.textContent = why; w.hidden = false; }
}
async function writeOne(temperature, seed, box) {
  const pre = box.querySelector("pre"), stats = box.querySelector(".stats");
  const controller = new AbortController();
  running.push(controller);
  const body = {model: model(), prompt: $("prompt").value, temperature, top_k: numberOrNull("top_k"),
                top_p: numberOrNull("top_p"), length: numberOrNull("length") ?? 500, seed};
  const t0 = performance.now();
  let first = null, bytes = 0, last = null;
  const p = document.createElement("span"), out = document.createElement("span");
  p.className = "p"; p.textContent = body.prompt;
  pre.append(p, out);
  try {
    const r = await reach("/api/write", {method: "POST", headers: {"Content-Type": "application/json"},
                                         body: JSON.stringify(body), signal: controller.signal});
    if (r.status === 503) throw new Gone();  // charlm serve is stopping
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
        last = event;
        if (event === "text") {
          if (first === null) first = performance.now() - t0;
          out.textContent += data.text; bytes += encoder.encode(data.text).length;
        }
        if (event === "error") throw new Error(data.error);
        const s = (performance.now() - t0) / 1000;
        stats.textContent = `${bytes.toLocaleString()} bytes \u00b7 ${Math.round(bytes / Math.max(s, 1e-3)).toLocaleString()} bytes/s` +
          ` \u00b7 first after ${(first ?? 0).toFixed(0)} ms`;
      }
    }
    if (last === "done") endCard(box, "done");
    else if (last === "shutdown" || !(await alive())) { endCard(box, "interrupted", STOPPED); serverGone(); }
    else endCard(box, "interrupted", "The stream ended before the sample did; generate again.");
  } catch (err) {
    if (err.name === "AbortError") endCard(box, "stopped");
    else if (err instanceof Gone || (err instanceof TypeError && !(await alive()))) {  // TypeError: the stream broke
      endCard(box, "interrupted", STOPPED); serverGone();
    } else if (err instanceof TypeError) endCard(box, "interrupted", `The connection broke (${err.message}); generate again.`);
    else { endCard(box, "error", err.message); $("write-error").textContent = err.message; }
  } finally {
    running = running.filter((c) => c !== controller);
    box.dataset.state = "over";
    if (!running.length) {
      $("stop").disabled = true;
      $("generate").disabled = document.body.dataset.server === "gone";
    }
  }
}
function generate() {
  if ($("generate").disabled) return;
  $("write-error").textContent = "";
  const listed = listedTemperatures().map(Number);
  const temps = listed.length ? listed : [Number($("temperature").value)];
  const fail = (message) => { $("write-error").textContent = message; };
  if (temps.some((t) => !Number.isFinite(t) || t < 0)) return fail("Temperatures must be numbers >= 0.");
  if (temps.length > LIMITS.max_samples) return fail(`At most ${LIMITS.max_samples} samples side by side (this server's limit).`);
  const promptBytes = encoder.encode($("prompt").value).length, length = numberOrNull("length") ?? 500;
  if (promptBytes > LIMITS.max_prompt) {
    return fail(`The prompt is ${promptBytes.toLocaleString()} bytes; this server takes at most ${LIMITS.max_prompt.toLocaleString()}.`);
  }
  if (length > LIMITS.max_length) return fail(`Length: at most ${LIMITS.max_length.toLocaleString()} bytes a sample (this server's limit).`);
  // one seed for every sample of this click (drawn here when the box is empty), so that side by side
  // the differences are the temperature's
  const seed = numberOrNull("seed") ?? Math.floor(Math.random() * 2 ** 31);
  $("samples").textContent = "";
  $("generate").disabled = true; $("stop").disabled = false;
  for (const t of temps) {
    const box = sampleCard(t, seed);
    $("samples").append(box);
    writeOne(t, seed, box);
  }
}
$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => running.forEach((c) => c.abort()));

// example prompts: the server picks them per model, from what it knows (charlm/serve/examples.py)
function drawExamples() {
  const box = $("write-examples"), examples = MODELS[model()].examples;
  box.textContent = "";
  if (!examples.length) return;
  const label = document.createElement("span"); label.textContent = "Try:"; box.append(label);
  for (const text of examples) {
    const chip = document.createElement("button");
    chip.type = "button"; chip.className = "chip"; chip.textContent = text.trimEnd().replace(/\n/g, "\u23ce").replace(/\t/g, "\u21e5");
    chip.title = "Write from this prompt";
    chip.addEventListener("click", () => { $("prompt").value = text; autoPrompt = text; generate(); });
    box.append(chip);
  }
  // the prompt box follows the model until it is edited: a model of C starts from C
  if ((autoPrompt === null || $("prompt").value === autoPrompt) && !examples.includes($("prompt").value)) {
    $("prompt").value = autoPrompt = examples[0];
  }
}

// ---- Look inside ----
// One look at a time from this page: a newer one (typing, another unit) aborts the older, so the
// server skips it if it has not started yet; the view says it is working until the answer comes.
// Likewise one saliency (salientRequest): a newer click or a new look aborts it.
let look = null, lookTimer = null, lookRequest = null, salientRequest = null, rankingFor = null;
let selected = null, salient = null, focusT = null;  // the character whose saliency is asked / shown; the roving tab stop
function scheduleLook(delay = 250) { clearTimeout(lookTimer); lookTimer = setTimeout(runLook, delay); }
function stopSaliency() { if (salientRequest) salientRequest.abort(); salientRequest = null; }
function drawNote() {
  let note = look ? look.note : "";
  if (salient) {
    note += `Saliency of the guess after the outlined character (the actual next one, ${JSON.stringify(salient.target)}, ` +
            `had p = ${salient.p}): green = how much each earlier character mattered.`;
  }
  $("look-note").textContent = note;
}
function clearSaliency() { stopSaliency(); selected = null; salient = null; drawLook(); drawNote(); }
async function runLook() {
  if (lookRequest) lookRequest.abort();
  stopSaliency();  // the new look redraws the view without it
  const controller = new AbortController();
  lookRequest = controller;
  const [text, cutShort] = cut($("look-text").value, LIMITS.max_look);
  const cutNote = cutShort ? `The text is longer than ${LIMITS.max_look.toLocaleString()} bytes: only its start is shown (the server's limit). ` : "";
  $("look-note").textContent = cutNote;
  $("look-busy").textContent = `reading ${encoder.encode(text).length.toLocaleString()} bytes\u2026`;
  $("look-out").classList.add("busy");
  try {
    const data = await postJSON("/api/look", {model: model(), text, state: $("look-state").value,
      layer: Number($("look-layer").value), unit: Number($("look-unit").value)}, controller.signal);
    $("look-error").textContent = "";
    look = {...data, text, note: cutNote + (data.note ? data.note + " " : "")};
    selected = null; salient = null;
    $("look-bpc").innerHTML = data.bpc === null ? "" : `<b>${data.bpc.toFixed(3)}</b> bpc over this text`;
    drawLook(); drawNote(); drawRanking();
  } catch (err) {
    if (err.name !== "AbortError") $("look-error").textContent = err.message;
  } finally {
    if (lookRequest === controller) {  // the latest look is over: nothing is being read
      lookRequest = null; $("look-busy").textContent = ""; $("look-out").classList.remove("busy");
    }
  }
}
function drawLegend() {
  const legend = $("look-legend");
  if (salient) {
    legend.innerHTML = '<span>0</span><span class="scale saliency"></span><span>most: how much each earlier character ' +
                       "mattered to the guess after the outlined one</span>";
  } else if ($("colour-by").value === "surprise") {
    legend.innerHTML = '<span>0 bits</span><span class="scale surprise"></span><span>8+ bits of surprise</span>';
  } else {
    const v = look && look.view;
    legend.innerHTML = '<span>\u22121</span><span class="scale unit"></span><span>+1</span>' +
      (v ? `<span>${v.state} state \u00b7 layer ${v.layer} \u00b7 unit ${v.unit}</span>` : "");
  }
}
function drawLook() {
  const out = $("look-out");
  const refocus = out.contains(document.activeElement) && document.activeElement !== out;
  out.textContent = "";
  drawLegend();
  if (!look) return;
  const bySurprise = $("colour-by").value === "surprise";
  const max = salient ? Math.max(1e-12, ...salient.scores) : 0;
  let stop = null, firstSpan = null;
  look.chars.forEach((ch, t) => {
    if (!ch) return;  // inner byte of a multi-byte character: shown with its last byte
    const span = document.createElement("span");
    span.className = "ch"; span.dataset.t = t; span.textContent = show(ch); span.tabIndex = -1;
    let colour = bySurprise ? surpriseColour(look.surprise[t]) : look.colours[t];
    if (salient) {
      const i = t - salient.start;
      colour = i >= 0 && i < salient.scores.length ? `rgba(40,170,60,${(salient.scores[i] / max).toFixed(2)})` : "transparent";
    }
    if (t === selected) span.classList.add("sel");
    span.style.background = colour;
    if (t === focusT) stop = span;
    firstSpan = firstSpan || span;
    out.append(span);
  });
  stop = stop || firstSpan;  // one tab stop in the text (a roving tabindex): arrows move within it
  if (stop) { stop.tabIndex = 0; focusT = Number(stop.dataset.t); if (refocus) stop.focus({preventScroll: true}); }
}
function drawRanking() {
  const table = $("ranking"), key = `${model()}\u0000${look.text}`;
  const refocus = table.contains(document.activeElement) ? [...table.querySelectorAll("tr.pick")].indexOf(document.activeElement) : -1;
  if (rankingFor !== key) {  // the ranking depends on the text only: another unit keeps the rows (and the focus)
    rankingFor = key;
    table.innerHTML = "<thead><tr><th>feature</th><th>state</th><th>layer</th><th>unit</th><th>r</th></tr></thead>";
    const body = document.createElement("tbody");
    for (const r of look.ranking) {
      const tr = document.createElement("tr"); tr.className = "pick"; tr.tabIndex = 0;
      tr.setAttribute("aria-label", `colour by ${r.state} layer ${r.layer} unit ${r.unit} (${r.feature}, r ${r.r.toFixed(3)})`);
      for (const v of [r.feature, r.state, r.layer, r.unit, r.r.toFixed(3)]) {
        const td = document.createElement("td"); td.textContent = v; tr.append(td);
      }
      const pick = () => {
        $("look-state").value = r.state; $("look-layer").value = r.layer; $("look-unit").value = r.unit;
        $("colour-by").value = "unit"; scheduleLook(0);
      };
      tr.addEventListener("click", pick);
      tr.addEventListener("keydown", (e) => { if (e.key === "Enter" || e.key === " ") { e.preventDefault(); pick(); } });
      body.append(tr);
    }
    table.append(body);
    if (refocus >= 0) table.querySelectorAll("tr.pick")[refocus]?.focus({preventScroll: true});
  }
}
$("look-text").addEventListener("input", () => scheduleLook());
for (const id of ["look-state", "look-layer", "look-unit"]) $(id).addEventListener("input", () => scheduleLook(100));
$("colour-by").addEventListener("change", () => clearSaliency());

// Saliency of character t (a click, Enter, or the touch tooltip's button); again on the same character: off.
// A newer request aborts the one under way (the server skips it if it has not started); an answer for a text the
// view no longer shows is dropped.
async function toggleSaliency(t) {
  if (!look) return;
  stopSaliency();
  if (selected === t) { clearSaliency(); return; }
  selected = t;
  const controller = new AbortController(), text = look.text;
  salientRequest = controller;
  try {
    const data = await postJSON("/api/saliency", {model: model(), text, position: t}, controller.signal);
    if (salientRequest !== controller || !look || look.text !== text) return;  // another click, or another text
    $("look-error").textContent = "";
    salient = data;
    drawLook(); drawNote();
    if ($("tip").classList.contains("docked")) showTip(t, "touch");  // its button now says "hide"
  } catch (err) {
    if (err.name !== "AbortError" && salientRequest === controller) { $("look-error").textContent = err.message; selected = null; }
  } finally {
    if (salientRequest === controller) salientRequest = null;
  }
}

// The tooltip: the model's five best guesses after a character. Beside the mouse; below (or above) a character
// focused by keyboard; on a touch screen a sheet docked at the bottom of the screen, the page scrolled so that it
// never covers the character, with a button for saliency (a tap never asks for one) and one to close it.
let tipT = null;
function hideTip() {
  const tip = $("tip");
  tip.style.display = "none"; tip.classList.remove("docked"); tipT = null; document.body.style.paddingBottom = "";
}
function showTip(t, how, x = 0, y = 0) {
  if (!look || look.top[t] === undefined) return;
  const tip = $("tip"), s = look.surprise[t];
  let html = `<div class="head">${escapeHTML(JSON.stringify(look.chars[t]))}  unit ${look.values[t].toFixed(3)}` +
             (s === null ? "" : ` \u00b7 surprise ${s.toFixed(2)} bits`) + "</div><div>next:</div>";
  for (const [g, p] of look.top[t]) {
    html += `<div class="row">${escapeHTML(JSON.stringify(g).padEnd(6))} ${(100 * p).toFixed(1).padStart(5)}%` +
            `<span class="bar" style="width:${(80 * p).toFixed(0)}px"></span></div>`;
  }
  const on = selected === t;
  if (how === "touch") {
    html += `<div class="tip-actions"><button type="button" class="primary" data-act="saliency">${on ? "Hide saliency" : "Saliency"}</button>` +
            '<button type="button" class="secondary" data-act="close">Close</button></div>';
  } else {
    html += `<div class="how">${how === "key" ? "Enter" : "click"}: ${on ? "hide saliency" : "saliency"}` +
            (how === "key" ? " \u00b7 \u2190 \u2192: move" : "") + "</div>";
  }
  tip.innerHTML = html; tip.style.display = "block"; tipT = t;
  tip.classList.toggle("docked", how === "touch");
  const w = tip.offsetWidth, h = tip.offsetHeight;
  if (how === "touch") {
    tip.style.top = "auto"; tip.style.bottom = "8px";
    document.body.style.paddingBottom = `${h + 24}px`;  // room to scroll the last line above the sheet
    const r = $("look-out").querySelector(`[data-t="${t}"]`).getBoundingClientRect(), clear = innerHeight - h - 24;
    if (r.bottom > clear) scrollBy({top: r.bottom - clear, behavior: "instant"});
    return;
  }
  tip.style.bottom = "auto";
  if (how === "key") {
    const r = $("look-out").querySelector(`[data-t="${t}"]`).getBoundingClientRect();
    x = r.left; y = r.bottom + 6;
    if (y + h > innerHeight - 8) y = r.top - h - 6;
  } else {
    x += 14; y += 14;
    if (y + h > innerHeight - 8) y -= h + 28;
  }
  tip.style.left = `${Math.max(8, Math.min(x, innerWidth - w - 8))}px`; tip.style.top = `${Math.max(8, y)}px`;
}
let pointerKind = "mouse";
document.addEventListener("pointerdown", (e) => {
  pointerKind = e.pointerType;
  const tip = $("tip");  // a tap elsewhere closes the docked tooltip
  if (tip.classList.contains("docked") && !tip.contains(e.target) && !$("look-out").contains(e.target)) hideTip();
}, true);
$("look-out").addEventListener("pointermove", (e) => {
  if (e.pointerType !== "mouse") return;
  const t = e.target.dataset && e.target.dataset.t;
  if (t === undefined) hideTip(); else showTip(Number(t), "mouse", e.clientX, e.clientY);
});
$("look-out").addEventListener("pointerleave", (e) => { if (e.pointerType === "mouse") hideTip(); });
$("look-out").addEventListener("click", (e) => {
  const t = e.target.dataset && e.target.dataset.t;
  if (t === undefined || !look) return;
  if (pointerKind === "touch") showTip(Number(t), "touch"); else toggleSaliency(Number(t));
});
$("look-out").addEventListener("focusin", (e) => {
  const t = e.target.dataset && e.target.dataset.t;
  if (t === undefined) return;
  for (const s of $("look-out").querySelectorAll('[tabindex="0"]')) s.tabIndex = -1;
  e.target.tabIndex = 0; focusT = Number(t);
  if (e.target.matches(":focus-visible")) showTip(focusT, "key");
});
$("look-out").addEventListener("focusout", (e) => {
  if (!$("tip").classList.contains("docked") && !$("look-out").contains(e.relatedTarget)) hideTip();
});
$("look-out").addEventListener("keydown", (e) => {
  const span = e.target, t = span.dataset && span.dataset.t;
  if (t === undefined) return;
  const next = {ArrowRight: span.nextElementSibling, ArrowLeft: span.previousElementSibling,
                Home: span.parentNode.firstElementChild, End: span.parentNode.lastElementChild}[e.key];
  if (next) { e.preventDefault(); next.focus(); }
  else if (e.key === "Enter" || e.key === " ") { e.preventDefault(); toggleSaliency(Number(t)); showTip(Number(t), "key"); }
  else if (e.key === "Escape") { hideTip(); if (selected !== null) clearSaliency(); }
});
$("tip").addEventListener("click", (e) => {
  const act = e.target.dataset && e.target.dataset.act;
  if (act === "close") hideTip();
  if (act === "saliency" && tipT !== null) toggleSaliency(tipT).then(() => { if (tipT !== null) showTip(tipT, "touch"); });
});
addEventListener("scroll", () => { if (!$("tip").classList.contains("docked")) hideTip(); }, {passive: true});

// ---- Who wrote this ----
async function runWho() {
  if ($("who-run").disabled) return;
  $("who-error").textContent = ""; $("verdict").hidden = true; $("who-out").textContent = "";
  const [text, cutShort] = cut($("who-text").value, LIMITS.max_compare);
  $("who-note").textContent = cutShort ? `The passage is longer than ${LIMITS.max_compare.toLocaleString()} bytes: only its start is scored (the server's limit). ` : "";
  $("who-run").disabled = true;
  try {
    const data = await postJSON("/api/compare", {text});
    if (data.notes.length) $("who-note").textContent += `Struck through: left out for every model, so that all score the same bytes (${data.notes.join("; ")}).`;
    const v = data.verdict;
    let html = `Most likely: <b>${escapeHTML(v.name)}</b> \u00b7 ${v.bpc.toFixed(4)} bpc over ${v.count.toLocaleString()} bytes`;
    for (const o of v.others) {
      html += `<div class="others">${escapeHTML(o.name)}: ${o.bpc.toFixed(4)} bpc (+${o.margin.toFixed(4)} bpc, ` +
              `${o.bytes_more.toLocaleString()} bytes more to encode)</div>`;
    }
    $("verdict").innerHTML = html; $("verdict").hidden = false;
    const skipped = new Set(data.skipped);
    for (const s of data.scores) {
      const row = document.createElement("div"); row.className = "card row" + (s.model === v.model ? " best" : "");
      row.innerHTML = `<h3><span>${escapeHTML(s.name)}</span><span class="score">${s.bpc.toFixed(4)} bpc</span></h3>`;
      const box = document.createElement("div"); box.className = "text";
      let from = 0;  // a character's bytes: from the one after the previous character to its own (its last)
      data.chars.forEach((ch, t) => {
        if (!ch) return;
        const bytes = [...Array(t - from + 1).keys()].map((i) => from + i);
        from = t + 1;
        const span = document.createElement("span"); span.className = "ch"; span.textContent = show(ch);
        if (bytes.some((b) => skipped.has(b))) {
          span.classList.add("skip"); span.title = "left out: a model never saw it";
        } else {
          const bits = bytes.map((b) => s.surprise[b]).filter((b) => b !== null);
          const total = bits.length ? bits.reduce((a, b) => a + b, 0) : null;
          span.style.background = surpriseColour(total);
          span.title = total === null ? "read first: context only" : `${total.toFixed(2)} bits`;
        }
        box.append(span);
      });
      row.append(box); $("who-out").append(row);
    }
  } catch (err) { $("who-error").textContent = err.message; }
  finally { $("who-run").disabled = MODELS.length < 2 || document.body.dataset.server === "gone"; }
}
$("who-run").addEventListener("click", runWho);

// ---- start ----
// The models and limits, or an Error saying why not (the server gone, or refusing: its message).
async function loadModels() {
  let r;
  try { r = await fetch("/api/models"); } catch {
    throw new Error("could not reach charlm serve. Is it running? Start it again, then reload this page.");
  }
  const data = await r.json().catch(() => null);
  if (!r.ok || !data || !Array.isArray(data.models)) {
    throw new Error(`charlm serve refused the list of models (${(data && data.error) || `it answered ${r.status}`}). ` +
                    "Reload this page to try again.");
  }
  return data;
}
function describeModel(m) {
  const cell = {lstm: "LSTM", gru: "GRU", rnn: "RNN"}[m.cell] || m.cell;
  $("model-about").textContent = `${cell} \u00b7 ${m.layers} layer${m.layers > 1 ? "s" : ""} \u00d7 ${m.hidden_size} ` +
    `units \u00b7 knows ${m.symbols} characters`;
  $("model-about").title = `its characters: ${m.vocab}`;
}
function showLimits(data) {
  const n = (v) => v.toLocaleString();
  $("version").textContent = `charlm ${data.version}`;
  $("limits").innerHTML = [
    `a prompt of ${n(LIMITS.max_prompt)} bytes, a sample of ${n(LIMITS.max_length)}`,
    `${LIMITS.max_samples} samples side by side, ${LIMITS.max_generations} being written at once (all tabs)`,
    `Look inside reads ${n(LIMITS.max_look)} bytes; saliency looks ${LIMITS.saliency_window} back`,
    `Who wrote this? reads ${n(LIMITS.max_compare)} bytes`].map((s) => `<li>${s}</li>`).join("");
  document.querySelectorAll(".win").forEach((e) => { e.textContent = LIMITS.saliency_window; });
  $("length").max = LIMITS.max_length;
}
(async () => {
  let data;
  try { data = await loadModels(); } catch (err) {
    $("start-error").textContent = `No models to use: ${err.message}`;
    document.querySelectorAll("button.primary").forEach((b) => { b.disabled = true; });
    document.body.dataset.ready = "failed";
    return;
  }
  MODELS = data.models; LIMITS = data.limits;
  for (const [i, m] of MODELS.entries()) {
    const o = document.createElement("option"); o.value = i;
    o.textContent = `${m.name} (${m.cell} ${m.layers}\u00d7${m.hidden_size})`; $("model").append(o);
  }
  showLimits(data);
  if (MODELS.length < 2) {
    $("who-run").disabled = true;
    $("who-note").textContent = "Start charlm serve with two or more --ckpt_path to compare models.";
  }
  const setModel = () => {
    const m = MODELS[model()];
    $("look-state").innerHTML = m.states.map((s) => `<option>${s}</option>`).join("");
    $("look-unit").max = m.hidden_size - 1;
    describeModel(m); drawExamples();
  };
  setModel();
  showTemperatureRule();
  $("model").addEventListener("change", () => { setModel(); rankingFor = null; scheduleLook(0); });
  document.body.dataset.ready = "1";
})();
