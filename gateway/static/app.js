// tritone web page: stream music or speech into Web Audio as it arrives, then keep it as a WAV; manage jobs
// and cloned voices.
"use strict";

const $ = (id) => document.getElementById(id);

// The API's error envelope is {"error": {"message": ...}}; anything else falls back to the status line.
async function apiError(response) {
  try {
    const body = await response.json();
    if (body && body.error && body.error.message) return body.error.message;
  } catch (_) { /* not JSON */ }
  return `${response.status} ${response.statusText}`;
}

// ---- API key: kept in this browser (localStorage) and sent on every request -------------------------

const KEY_STORAGE = "tritone.apiKey";
let pageKey = "";   // where storage is off, the key lasts this page

function apiKey() {
  try { return localStorage.getItem(KEY_STORAGE) || pageKey; } catch (_) { return pageKey; }
}

// fetch() with the key, if one is set, as OpenAI's clients send it.
function api(url, options = {}) {
  const headers = new Headers(options.headers || {});
  const key = apiKey();
  if (key) headers.set("Authorization", `Bearer ${key}`);
  return fetch(url, { ...options, headers });
}

// A link to a file the API serves: a plain link on an open server; with a key, fetched with it and saved.
function fileLink(url, text, filename) {
  const link = document.createElement("a");
  link.href = url;
  link.textContent = text;
  link.addEventListener("click", async (event) => {
    if (!apiKey()) return;
    event.preventDefault();
    const response = await api(url);
    if (!response.ok) return showError($("jobs-error"), await apiError(response));
    const saved = document.createElement("a");
    saved.href = URL.createObjectURL(await response.blob());
    saved.download = filename;
    saved.click();
    setTimeout(() => URL.revokeObjectURL(saved.href), 60000);
  });
  return link;
}

function showError(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

// Form fields -> request body; empty optional fields are left out so the server's defaults apply.
// seed stays a string: JSON numbers lose precision past 2^53; the API accepts an integer string.
const TEXT_FIELDS = new Set(["prompt", "seed", "input", "voice", "model"]);

function formBody(form) {
  const body = {};
  for (const [name, value] of new FormData(form)) {
    if (value === "") continue;
    body[name] = TEXT_FIELDS.has(name) ? value : Number(value);
  }
  return body;
}

// ---- Streaming generation ----------------------------------------------------------------------

function wavBlob(parts, sampleRate) {
  const dataSize = parts.reduce((n, part) => n + part.length, 0);
  const header = new DataView(new ArrayBuffer(44));
  const text = (offset, s) => [...s].forEach((c, i) => header.setUint8(offset + i, c.charCodeAt(0)));
  text(0, "RIFF"); header.setUint32(4, 36 + dataSize, true); text(8, "WAVE");
  text(12, "fmt "); header.setUint32(16, 16, true); header.setUint16(20, 1, true); // PCM
  header.setUint16(22, 1, true); header.setUint32(24, sampleRate, true);             // mono
  header.setUint32(28, sampleRate * 2, true); header.setUint16(32, 2, true); header.setUint16(34, 16, true);
  text(36, "data"); header.setUint32(40, dataSize, true);
  return new Blob([header, ...parts], { type: "audio/wav" });
}

let audioContext = null;
let liveSources = [];      // Web Audio buffers of the stream playing now (or still scheduled)
let running = null;        // the AbortController of the stream being received

// Silence the live stream's scheduled audio: a new stream, Stop, or the player starting must never overlap it.
function stopLive() {
  for (const source of liveSources) {
    try { source.stop(); } catch (_) { /* already ended */ }
  }
  liveSources = [];
}

// POST `body` to `url` asking for raw s16le PCM, schedule each piece on the AudioContext as it arrives, and
// offer the whole as a WAV at the end. `ui` holds the elements of one panel (music or speech).
async function streamAudio(url, body, ui) {
  const { button, stop, status, error, player, download } = ui;
  const setStatus = (state, text) => { status.dataset.state = state; status.textContent = text; };
  showError(error, "");
  button.disabled = true;
  if (running) running.abort();   // one stream at a time
  stopLive();
  for (const other of document.querySelectorAll("audio")) other.pause();
  player.removeAttribute("src");  // nothing to replay until this stream is whole
  player.load();
  const controller = new AbortController();
  running = controller;
  stop.hidden = false;
  stop.onclick = () => controller.abort();
  // Created on the click (a user gesture), so browsers allow it to play.
  audioContext = audioContext || new AudioContext();
  await audioContext.resume();
  let bytes = 0, buffers = 0;
  status.dataset.bytes = "0"; status.dataset.buffers = "0";
  setStatus("connecting", "Generating…");
  try {
    const response = await api(url, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...body, response_format: "pcm" }),
      signal: controller.signal,
    });
    if (!response.ok) throw new Error(await apiError(response));
    const rate = Number(response.headers.get("X-Sample-Rate"));
    const reader = response.body.getReader();
    const parts = [];
    let odd = null;          // a sample split across two network chunks
    let playAt = 0;          // where the next buffer starts on the AudioContext's clock
    setStatus("streaming", "Streaming…");
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      parts.push(value);
      bytes += value.length;
      let chunk = value;
      if (odd) { chunk = new Uint8Array(value.length + 1); chunk.set(odd); chunk.set(value, 1); }
      const even = chunk.length - (chunk.length % 2);
      odd = even < chunk.length ? chunk.slice(even) : null;
      if (even === 0) continue;
      const samples = new Int16Array(chunk.slice(0, even).buffer);   // s16le; every browser is little-endian
      const buffer = audioContext.createBuffer(1, samples.length, rate);
      const channel = buffer.getChannelData(0);
      for (let i = 0; i < samples.length; i++) channel[i] = samples[i] / 32768;
      const source = audioContext.createBufferSource();
      source.buffer = buffer;
      source.connect(audioContext.destination);
      playAt = Math.max(playAt, audioContext.currentTime + 0.05);
      source.start(playAt);
      source.onended = () => { liveSources = liveSources.filter((other) => other !== source); };
      liveSources.push(source);
      playAt += buffer.duration;
      buffers += 1;
      status.dataset.bytes = String(bytes); status.dataset.buffers = String(buffers);
      status.textContent = `Streaming… ${bytes} bytes, ${(bytes / 2 / rate).toFixed(2)} s received`;
    }
    if (player.dataset.url) URL.revokeObjectURL(player.dataset.url);
    player.dataset.url = URL.createObjectURL(wavBlob(parts, rate));
    player.src = player.dataset.url;
    download.href = player.dataset.url;
    download.hidden = false;
    setStatus("done", `Done: ${bytes} bytes, ${(bytes / 2 / rate).toFixed(2)} s of audio at ${rate} Hz.`);
  } catch (failure) {
    if (controller.signal.aborted) {   // Stop (or a new stream): the request is cancelled, the server stops
      stopLive();
      setStatus("stopped", `Stopped after ${bytes} bytes.`);
    } else {
      showError(error, failure.message);
      setStatus("error", bytes ? `Stopped after ${bytes} bytes.` : "Failed.");
    }
  } finally {
    if (running === controller) running = null;
    stop.hidden = true;
    button.disabled = false;
  }
}

function generate(event) {
  event.preventDefault();
  return streamAudio("/v1/audio/music", { ...formBody(event.target), stream: true }, {
    button: $("generate"), stop: $("stop"), status: $("stream-status"), error: $("error"), player: $("player"),
    download: $("download"),
  });
}

function speak(event) {
  event.preventDefault();
  return streamAudio("/v1/audio/speech", formBody(event.target), {
    button: $("speak"), stop: $("speech-stop"), status: $("speech-status"), error: $("speech-error"),
    player: $("speech-player"), download: $("speech-download"),
  });
}

// ---- Tabs --------------------------------------------------------------------------------------

function selectTab(tab) {
  for (const other of document.querySelectorAll('[role="tab"]')) {
    const selected = other === tab;
    other.setAttribute("aria-selected", String(selected));
    other.tabIndex = selected ? 0 : -1;
    $(other.getAttribute("aria-controls")).hidden = !selected;
  }
  if (tab.id === "tab-speech") refreshSpeech();
}

function tabKeys(event) {   // arrow keys move between tabs (WAI-ARIA tabs pattern)
  const tabs = [...document.querySelectorAll('[role="tab"]')];
  const step = { ArrowRight: 1, ArrowLeft: -1 }[event.key];
  if (!step) return;
  const next = tabs[(tabs.indexOf(event.target) + step + tabs.length) % tabs.length];
  next.focus();
  selectTab(next);
}

// ---- Voices ------------------------------------------------------------------------------------

function option(value, label) {
  const item = document.createElement("option");
  item.value = value;
  item.textContent = label;
  return item;
}

// codec -> the speech models that speak from it, as the voice lists say (GET /v1/audio/voices?model=)
const codecModels = new Map();
let cloneHelp = "A clip (wav, flac, mp3 or ogg)";   // the upload's file description, once the API schema is read
let transcriptRequired = true;

function learnCodec(listing) {
  if (!listing.codec || !listing.model) return;
  const models = codecModels.get(listing.codec) || [];
  if (!models.includes(listing.model)) codecModels.set(listing.codec, [...models, listing.model]);
}

function renderVoice(voice) {
  const li = document.createElement("li");
  const title = document.createElement("p");
  title.className = "job-title";
  title.textContent = voice.name;
  const info = document.createElement("p");
  const details = [`${voice.duration.toFixed(1)} s`];
  if (voice.codec) details.push(`for ${(codecModels.get(voice.codec) || [voice.codec]).join(", ")}`);
  if (voice.transcript) details.push(`“${voice.transcript}”`);
  info.textContent = details.join(" · ");
  const remove = document.createElement("button");
  remove.type = "button";
  remove.textContent = "Delete";
  remove.setAttribute("aria-label", `Delete voice ${voice.name}`);
  remove.addEventListener("click", async () => {
    if (!confirm(`Delete the voice “${voice.name}”? Requests naming it will fail.`)) return;
    const response = await api(`/v1/audio/voices/${encodeURIComponent(voice.id)}`, { method: "DELETE" });
    showError($("voice-error"), response.ok ? "" : await apiError(response));
    await refreshVoices();
  });
  li.append(title, info, remove);
  li.dataset.voice = voice.id;
  li.dataset.codec = voice.codec || "";
  return li;
}

let modelsFailed = "";   // why the model picker could not be filled (shown until it can: a key was missing, say)

function modelsError(message) {
  if (message || $("speech-error").textContent === modelsFailed) showError($("speech-error"), message);
  modelsFailed = message;
}

// The speech models the gateway serves (GET /v1/audio/models), less their OpenAI aliases (`parent` in /v1/models).
async function loadModels() {
  let listed, all;
  try {
    [listed, all] = await Promise.all([api("/v1/audio/models"), api("/v1/models").catch(() => null)]);
  } catch (failure) {
    return modelsError(`Models: ${failure.message}`);
  }
  if (!listed.ok) return modelsError(await apiError(listed));
  const ids = ((await listed.json()).models || []).map((model) => model.id);
  const aliases = new Set();
  if (all && all.ok) {
    for (const model of (await all.json()).data || []) if (model.parent) aliases.add(model.id);
  }
  const picker = $("speech-model"), chosen = picker.value;
  const models = ids.filter((id) => !aliases.has(id));
  picker.replaceChildren(...models.map((id) => option(id, id)));
  if (models.includes(chosen)) picker.value = chosen;
  modelsError(models.length ? "" : "No speech model is served.");
  // each model's codec, to say which model each stored voice is for
  await Promise.all(models.filter((id) => id !== picker.value).map(async (id) => {
    try {
      const response = await api(`/v1/audio/voices?model=${encodeURIComponent(id)}`);
      if (response.ok) learnCodec(await response.json());
    } catch (_) { /* only a label */ }
  }));
}

// Show the chosen model's own options (and send only those: a disabled fieldset is left out of the form).
function showModelOptions() {
  const model = $("speech-model").value;
  for (const options of document.querySelectorAll("fieldset[data-models]")) {
    const mine = options.dataset.models.split(" ").includes(model);
    options.hidden = !mine;
    options.disabled = !mine;
  }
}

// The clone form as the chosen model takes it: a transcript is required only by a model that conditions on it.
function showCloneNeeds() {
  const transcript = $("voice-transcript");
  transcript.required = transcriptRequired;
  $("transcript-optional").hidden = transcriptRequired;
  $("voice-help").textContent = `${cloneHelp}; ${transcriptRequired ? "and the words spoken in it"
    : "the words spoken in it are optional"}.`;
}

async function refreshSpeech() {
  await loadModels();
  showModelOptions();
  await refreshVoices();
}

let voicesAsked = 0;   // only the latest listing fills the pickers (the model may change while one is on its way)

// The chosen model's built-in voices, then the stored voices of its codec; every stored voice in the list below.
async function refreshVoices(select) {
  const model = $("speech-model").value, asked = ++voicesAsked;
  let response;
  try {
    response = await api(model ? `/v1/audio/voices?model=${encodeURIComponent(model)}` : "/v1/audio/voices");
  } catch (failure) {
    return showError($("voice-error"), `Voices: ${failure.message}`);
  }
  if (!response.ok) return showError($("voice-error"), await apiError(response));
  const listing = await response.json();
  if (asked !== voicesAsked) return;
  learnCodec(listing);
  const voices = listing.data || [];
  const picker = $("voice"), chosen = select || picker.value;
  const builtin = document.createElement("optgroup");
  builtin.label = "Built-in";
  const cloned = document.createElement("optgroup");
  cloned.label = "Cloned";
  for (const voice of voices) {
    if (voice.type === "audio_sample") {
      if (!listing.codec || voice.codec === listing.codec) cloned.append(option(voice.id, voice.name));
    } else {
      builtin.append(option(voice.id, voice.aliases && voice.aliases.length
        ? `${voice.name} (${voice.aliases.join(", ")})` : voice.name));
    }
  }
  picker.replaceChildren(builtin, ...(cloned.children.length ? [cloned] : []));
  if (chosen && [...picker.options].some((item) => item.value === chosen)) picker.value = chosen;
  const stored = voices.filter((voice) => voice.type === "audio_sample");
  $("voices").replaceChildren(...stored.map(renderVoice));
  $("voices-empty").hidden = stored.length > 0;
  transcriptRequired = listing.transcript_required !== false;
  showCloneNeeds();
  picker.dataset.model = listing.model || model;   // what the pickers show now
}

function modelChanged() {
  showModelOptions();
  showError($("speech-error"), "");
  refreshVoices();
}

async function uploadVoice(event) {
  event.preventDefault();
  const form = event.target, button = $("upload-voice");
  button.disabled = true;
  showError($("voice-error"), "");
  try {
    const body = new FormData(form);
    if ($("speech-model").value) body.set("model", $("speech-model").value);   // whose codec encodes it
    const response = await api("/v1/audio/voices", { method: "POST", body });
    if (!response.ok) return showError($("voice-error"), await apiError(response));
    const voice = await response.json();
    form.reset();
    await refreshVoices(voice.id);
  } catch (failure) {
    showError($("voice-error"), failure.message);
  } finally {
    button.disabled = false;
  }
}

// ---- Jobs --------------------------------------------------------------------------------------

const ACTIVE = new Set(["queued", "running"]);
let pollTimer = null;

function percent(job) {   // the API's progress is a percentage
  return job.status === "succeeded" ? 100 : Math.min(100, Math.max(0, Number(job.progress) || 0));
}

function renderJob(job) {
  const li = document.createElement("li");
  const title = document.createElement("p");
  title.className = "job-title";
  title.textContent = job.prompt || job.input || job.id;
  const badge = document.createElement("span");   // cancelled and failed jobs say so at a glance
  badge.className = "badge";
  badge.textContent = job.status;
  title.prepend(badge);
  const bar = document.createElement("progress");
  bar.max = 100;
  bar.value = percent(job);
  bar.setAttribute("aria-label", `Progress of job ${job.id}`);
  const info = document.createElement("p");
  const details = [job.status, `${Math.round(percent(job))}%`];
  if (job.queue_position != null && job.status === "queued") details.push(`position ${job.queue_position} in queue`);
  if (job.eta_s != null && ACTIVE.has(job.status)) details.push(`about ${Math.ceil(job.eta_s)} s left`);
  if (job.error) details.push(job.error);
  info.textContent = details.join(" · ");
  li.append(title, bar, info);
  if (ACTIVE.has(job.status)) {
    const cancel = document.createElement("button");
    cancel.type = "button";
    cancel.textContent = "Cancel";
    cancel.setAttribute("aria-label", `Cancel job ${job.id}`);
    cancel.addEventListener("click", () => jobRequest(`/v1/jobs/${encodeURIComponent(job.id)}/cancel`));
    li.append(cancel);
  }
  if (job.status === "succeeded" && job.audio_url) li.append(fileLink(job.audio_url, "Audio", `${job.id}.wav`));
  if (job.status === "succeeded" && job.captions_url) {
    li.append(" ", fileLink(`${job.captions_url}?format=vtt`, "Captions", `${job.id}.vtt`));
  }
  li.dataset.status = job.status;
  return li;
}

async function refreshJobs() {
  clearTimeout(pollTimer);
  let response;
  try {
    response = await api("/v1/jobs");
  } catch (error) {
    showError($("jobs-error"), `Jobs: ${error.message}`);
    pollTimer = setTimeout(refreshJobs, 5000);
    return;
  }
  if (response.status === 404 || response.status === 405) return jobsUnavailable();
  if (!response.ok) {
    showError($("jobs-error"), await apiError(response));
    pollTimer = setTimeout(refreshJobs, 5000);
    return;
  }
  showError($("jobs-error"), "");
  const body = await response.json();
  const jobs = Array.isArray(body) ? body : body.data || body.jobs || [];
  $("jobs").replaceChildren(...jobs.map(renderJob));
  $("jobs-empty").hidden = jobs.length > 0;
  if (jobs.some((job) => ACTIVE.has(job.status))) pollTimer = setTimeout(refreshJobs, 1000);
}

function jobsUnavailable() {
  const section = $("job-form").closest("section");
  section.dataset.available = "false";
  for (const control of $("job-form").elements) control.disabled = true;
  $("jobs-empty").textContent = "Jobs are not available on this server.";
}

async function jobRequest(url, body) {
  const response = await api(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  showError($("jobs-error"), response.ok ? "" : await apiError(response));
  await refreshJobs();
}

// ---- The models' limits, as the API documents them (they come from the models' Triton configs) -------

async function applyLimits() {
  let api;
  try {
    const response = await fetch("/openapi.json");
    if (!response.ok) return;
    api = await response.json();
  } catch (_) { return; }   // the server's own validation still applies
  const schemas = api.components.schemas;
  const limit = (input, property) => {
    if (!property) return;
    // an optional field's bounds sit on its non-null alternative ({"anyOf": [{"type": "number", ...}, null]})
    property = (property.anyOf || []).find((kind) => kind.type && kind.type !== "null") || property;
    if (property.maxLength !== undefined) input.maxLength = property.maxLength;
    if (property.minimum !== undefined) input.min = property.minimum;
    if (property.maximum !== undefined) input.max = property.maximum;
  };
  limit($("prompt"), schemas.MusicBody.properties.prompt);
  limit($("duration"), schemas.MusicBody.properties.duration);
  limit($("job-prompt"), schemas.JobBody.properties.prompt);
  limit($("speech-input"), schemas.SpeechBody.properties.input);
  // a model's own options: its range, and its default (the config's doc, "<model>: ...; default 0.5.") as placeholder
  for (const options of document.querySelectorAll("fieldset[data-models]")) {
    for (const input of options.querySelectorAll("input")) {
      const property = schemas.SpeechBody.properties[input.name];
      if (!property) continue;
      limit(input, property);
      const model = options.dataset.models.split(" ")[0];
      const doc = (property.description || "").split(`${model}: `)[1] || "";
      const stated = doc.match(/default (-?\d+(?:\.\d+)?)/);
      if (stated) input.placeholder = stated[1];
      input.title = property.description || "";
    }
  }
  const upload = api.paths["/v1/audio/voices"].post.requestBody.content["multipart/form-data"].schema;
  const file = schemas[upload.$ref.split("/").pop()].properties.file;
  if (file && file.description) {
    cloneHelp = file.description;
    showCloneNeeds();
  }
}

function keyChanged() {
  const key = $("api-key").value.trim();
  pageKey = key;
  try {
    if (key) localStorage.setItem(KEY_STORAGE, key); else localStorage.removeItem(KEY_STORAGE);
  } catch (_) { /* storage off: the key lasts this page */ }
  refreshJobs();
  refreshSpeech();
}

document.addEventListener("DOMContentLoaded", () => {
  $("api-key").value = apiKey();
  $("api-key").addEventListener("change", keyChanged);
  $("key-form").addEventListener("submit", (event) => { event.preventDefault(); keyChanged(); });
  for (const player of document.querySelectorAll("audio")) player.addEventListener("play", stopLive);
  $("generate-form").addEventListener("submit", generate);
  $("speech-form").addEventListener("submit", speak);
  $("voice-form").addEventListener("submit", uploadVoice);
  $("speech-model").addEventListener("change", modelChanged);
  for (const tab of document.querySelectorAll('[role="tab"]')) {
    tab.addEventListener("click", () => selectTab(tab));
    tab.addEventListener("keydown", tabKeys);
  }
  if (location.hash === "#speech") selectTab($("tab-speech"));
  $("job-form").addEventListener("submit", (event) => {
    event.preventDefault();
    jobRequest("/v1/jobs", formBody(event.target));
  });
  refreshJobs();
  applyLimits();
});
