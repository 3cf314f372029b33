// tritone web page: stream music into Web Audio as it arrives, then keep it as a WAV; manage jobs.
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

function showError(element, message) {
  element.textContent = message || "";
  element.hidden = !message;
}

// Form fields -> request body; empty optional fields are left out so the server's defaults apply.
function formBody(form) {
  const body = {};
  for (const [name, value] of new FormData(form)) {
    if (value === "") continue;
    // seed stays a string: JSON numbers lose precision past 2^53; the API accepts an integer string.
    body[name] = name === "prompt" || name === "seed" ? value : Number(value);
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
let audioUrl = null;

async function generate(event) {
  event.preventDefault();
  const form = event.target, button = $("generate"), status = $("stream-status");
  const setStatus = (state, text) => { status.dataset.state = state; status.textContent = text; };
  showError($("error"), "");
  button.disabled = true;
  // Created on the click (a user gesture), so browsers allow it to play.
  audioContext = audioContext || new AudioContext();
  await audioContext.resume();
  let bytes = 0, buffers = 0;
  status.dataset.bytes = "0"; status.dataset.buffers = "0";
  setStatus("connecting", "Generating…");
  try {
    const response = await fetch("/v1/audio/music", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ ...formBody(form), response_format: "pcm", stream: true }),
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
      playAt += buffer.duration;
      buffers += 1;
      status.dataset.bytes = String(bytes); status.dataset.buffers = String(buffers);
      status.textContent = `Streaming… ${bytes} bytes, ${(bytes / 2 / rate).toFixed(2)} s received`;
    }
    if (audioUrl) URL.revokeObjectURL(audioUrl);
    audioUrl = URL.createObjectURL(wavBlob(parts, rate));
    $("player").src = audioUrl;
    $("download").href = audioUrl;
    $("download").hidden = false;
    setStatus("done", `Done: ${bytes} bytes, ${(bytes / 2 / rate).toFixed(2)} s of audio at ${rate} Hz.`);
  } catch (error) {
    showError($("error"), error.message);
    setStatus("error", bytes ? `Stopped after ${bytes} bytes.` : "Failed.");
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
  title.textContent = job.prompt || job.id;
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
  if (job.status === "succeeded" && job.audio_url) {
    const link = document.createElement("a");
    link.href = job.audio_url;
    link.textContent = "Audio";
    li.append(link);
  }
  li.dataset.status = job.status;
  return li;
}

async function refreshJobs() {
  clearTimeout(pollTimer);
  let response;
  try {
    response = await fetch("/v1/jobs");
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
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: body ? JSON.stringify(body) : undefined,
  });
  showError($("jobs-error"), response.ok ? "" : await apiError(response));
  await refreshJobs();
}

document.addEventListener("DOMContentLoaded", () => {
  $("generate-form").addEventListener("submit", generate);
  $("job-form").addEventListener("submit", (event) => {
    event.preventDefault();
    jobRequest("/v1/jobs", formBody(event.target));
  });
  refreshJobs();
});
