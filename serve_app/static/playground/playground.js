// The Qwen3-TTS Serve playground: plain browser JavaScript, no build step, no third-party code.
// Every call goes to this server's public API with the key typed once (localStorage, sent as
// a Bearer header, never in a URL). Errors show the server's own message (its error envelope).
'use strict';

const CONFIG = JSON.parse(document.getElementById('qtts-config').textContent);
const BASE = location.pathname.replace(/\/playground\/?$/, '');  // the app's route prefix
const KEY_STORAGE = 'qtts.apiKey';
const $ = (id) => document.getElementById(id);

// What the tests (and a curious user, in the console) can read about the last result.
const state = window.qttsPlayground = {
  ttfaMs: null, streamedSeconds: 0, resultSeconds: 0, lastError: null, jobProgress: 0,
  recordedSeconds: 0,
  savedVoices: [],
};

// ------------------------------------------------------------------------------ the API
function apiKey() { return localStorage.getItem(KEY_STORAGE) || ''; }

function authHeaders(extra) {
  const headers = Object.assign({}, extra || {});
  if (apiKey()) headers['Authorization'] = 'Bearer ' + apiKey();
  return headers;
}

class ApiError extends Error {
  constructor(status, envelope) {
    const err = (envelope && envelope.error) || {};
    super(err.message || ('HTTP ' + status));
    this.status = status;
    this.code = err.code || 'http_error';
    this.param = err.param || null;
  }
}

async function call(path, options) {
  const opts = Object.assign({}, options || {});
  opts.headers = authHeaders(opts.headers);
  const response = await fetch(BASE + path, opts);
  if (!response.ok) {
    let envelope = null;
    try { envelope = await response.json(); } catch (_) { /* not JSON: keep the status */ }
    throw new ApiError(response.status, envelope);
  }
  return response;
}

async function callJson(path, body, method) {
  const response = await call(path, {
    method: method || 'POST', headers: {'Content-Type': 'application/json'},
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  return response.json();
}

// ---------------------------------------------------------------------------- messages
function showError(error) {
  const box = $('error');
  const where = error.param ? ' (' + error.param + ')' : '';
  box.textContent = error instanceof ApiError
    ? 'The server said' + where + ': ' + error.message + ' [' + error.status + ' ' + error.code + ']'
    : String(error.message || error);
  box.hidden = false;
  state.lastError = box.textContent;
  setStatus('Failed.');
}

function clearError() { $('error').hidden = true; $('error').textContent = ''; state.lastError = null; }
function setStatus(text) { $('status').textContent = text; }

async function guarded(button, work) {
  clearError();
  button.disabled = true;
  try { await work(); } catch (error) { showError(error); } finally { button.disabled = false; }
}

// ------------------------------------------------------------------------------ inputs
function mode() { return document.querySelector('input[name="mode"]:checked').value; }

function seedValue() {
  const raw = $('seed').value.trim();
  return raw === '' ? undefined : Number(raw);  // the server validates it, not the page
}

function referenceAudio() {
  const file = $('ref-audio').files[0];
  if (file) return file;
  if (recorded) return new File([recorded], 'recording.webm', {type: recorded.type || 'audio/webm'});
  return null;
}

function cloneForm(extra) {
  const audio = referenceAudio();
  if (!audio) throw new Error('Choose or record reference audio first.');
  if (!$('consent').checked) throw new Error('Tick the consent box: the speaker must have agreed to be cloned.');
  const form = new FormData();
  form.append('reference_audio', audio, audio.name || 'reference');
  const refText = $('ref-text').value.trim();
  if (refText) form.append('ref_text', refText);
  if ($('x-vector-only').checked) form.append('x_vector_only', 'true');
  form.append('language', $('language').value);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) form.append(k, String(v));
  return form;
}

// One request for the chosen mode: [path, fetch options]. `output` holds response_format,
// seed and (when streaming) stream_format.
function speechRequest(output) {
  const text = $('text').value;
  const json = (path, body) => [path, {method: 'POST', headers: {'Content-Type': 'application/json'},
                                       body: JSON.stringify(Object.assign(body, output))}];
  if (mode() === 'design') {
    return json('/v1/audio/design', {input: text, description: $('description').value,
                                     language: $('language').value});
  }
  if (mode() === 'clone') {
    return ['/v1/audio/clone', {method: 'POST', body: cloneForm(Object.assign({input: text}, output))}];
  }
  const body = {model: 'CustomVoice', input: text, voice: $('voice').value, language: $('language').value};
  const instructions = $('instructions').value.trim();
  if (instructions) body.instructions = instructions;
  return json('/v1/audio/speech', body);
}

// ------------------------------------------------------------------------------- audio
let resultUrl = null;

function extensionOf(format) { return CONFIG.extensions[format] || format; }

function wavFromPcm(int16, rate) {
  const header = new DataView(new ArrayBuffer(44));
  const bytes = int16.byteLength;
  const text = (offset, s) => { for (let i = 0; i < s.length; i++) header.setUint8(offset + i, s.charCodeAt(i)); };
  text(0, 'RIFF'); header.setUint32(4, 36 + bytes, true); text(8, 'WAVE'); text(12, 'fmt ');
  header.setUint32(16, 16, true); header.setUint16(20, 1, true); header.setUint16(22, 1, true);
  header.setUint32(24, rate, true); header.setUint32(28, rate * 2, true);
  header.setUint16(32, 2, true); header.setUint16(34, 16, true); text(36, 'data');
  header.setUint32(40, bytes, true);
  return new Blob([header.buffer, int16], {type: 'audio/wav'});
}

function drawWaveform(samples) {
  const canvas = $('waveform');
  const g = canvas.getContext('2d');
  g.clearRect(0, 0, canvas.width, canvas.height);
  if (!samples.length) return;
  const mid = canvas.height / 2;
  const step = Math.max(1, Math.floor(samples.length / canvas.width));
  g.fillStyle = '#3563c9';
  for (let x = 0; x < canvas.width; x++) {
    let lo = 1, hi = -1;
    const start = x * step;
    if (start >= samples.length) break;
    for (let i = start; i < Math.min(start + step, samples.length); i++) {
      const v = samples[i];
      if (v < lo) lo = v;
      if (v > hi) hi = v;
    }
    g.fillRect(x, mid - hi * mid, 1, Math.max(1, (hi - lo) * mid));
  }
}

async function samplesOf(blob) {
  const ctx = new OfflineAudioContext(1, 1, 24000);
  const decoded = await ctx.decodeAudioData(await blob.arrayBuffer());
  return decoded.getChannelData(0);
}

// Show a finished result: player, waveform, download link (in the format it was made in).
async function showResult(blob, format, label) {
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  const playable = format === 'pcm' ? wavFromPcm(new Int16Array(await blob.arrayBuffer()), 24000) : blob;
  resultUrl = URL.createObjectURL(playable);
  const player = $('player');
  player.src = resultUrl;
  const link = $('download');
  link.href = format === 'pcm' ? URL.createObjectURL(blob) : resultUrl;
  link.download = 'speech.' + extensionOf(format);
  link.textContent = 'Download ' + format;
  link.hidden = false;
  try {
    const samples = await samplesOf(playable);
    drawWaveform(samples);
    state.resultSeconds = samples.length / 24000;
  } catch (_) { drawWaveform(new Float32Array(0)); }
  setStatus(label);
  try { await player.play(); } catch (_) { /* autoplay refused: the controls are there */ }
}

// ----------------------------------------------------------------------- synthesize once
async function synthesize() {
  const format = $('format').value;
  const [path, options] = speechRequest({response_format: format, seed: seedValue()});
  setStatus('Synthesizing ...');
  const started = performance.now();
  const response = await call(path, options);
  const blob = await response.blob();
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  $('ttfa').textContent = '-';
  await showResult(blob, format, 'Done in ' + seconds + ' s (' + blob.size + ' bytes of ' + format + ').');
}

// --------------------------------------------------------------------------- streaming
// Raw 16-bit pcm, chunked: each chunk becomes an AudioBuffer scheduled right after the last.
async function stream() {
  const [path, options] = speechRequest({response_format: 'pcm', stream_format: 'audio', seed: seedValue()});
  const audio = new AudioContext();
  await audio.resume();
  state.ttfaMs = null; state.streamedSeconds = 0;
  $('ttfa').textContent = 'waiting ...';
  setStatus('Streaming ...');
  const started = performance.now();
  const response = await call(path, options);
  const rate = Number(response.headers.get('X-Sample-Rate')) || 24000;
  const reader = response.body.getReader();
  const parts = [];
  let carry = new Uint8Array(0);
  let playhead = audio.currentTime;
  for (;;) {
    const {done, value} = await reader.read();
    if (done) break;
    if (!value || !value.length) continue;
    const bytes = new Uint8Array(carry.length + value.length);
    bytes.set(carry); bytes.set(value, carry.length);
    const even = bytes.length - (bytes.length % 2);
    carry = bytes.slice(even);
    if (!even) continue;
    const int16 = new Int16Array(bytes.slice(0, even).buffer);
    parts.push(int16);
    if (state.ttfaMs === null) {
      state.ttfaMs = Math.round(performance.now() - started);
      $('ttfa').textContent = state.ttfaMs + ' ms';
    }
    const buffer = audio.createBuffer(1, int16.length, rate);
    const channel = buffer.getChannelData(0);
    for (let i = 0; i < int16.length; i++) channel[i] = int16[i] / 32768;
    const source = audio.createBufferSource();
    source.buffer = buffer;
    source.connect(audio.destination);
    playhead = Math.max(playhead, audio.currentTime);
    source.start(playhead);
    playhead += buffer.duration;
    state.streamedSeconds += buffer.duration;
    $('stream-seconds').textContent = '(' + state.streamedSeconds.toFixed(2) + ' s received)';
  }
  const total = parts.reduce((n, p) => n + p.length, 0);
  const all = new Int16Array(total);
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  const wav = wavFromPcm(all, rate);
  if (resultUrl) URL.revokeObjectURL(resultUrl);
  resultUrl = URL.createObjectURL(wav);
  $('player').src = resultUrl;
  const link = $('download');
  link.href = resultUrl; link.download = 'speech.wav'; link.textContent = 'Download wav'; link.hidden = false;
  const floats = new Float32Array(total);
  for (let i = 0; i < total; i++) floats[i] = all[i] / 32768;
  drawWaveform(floats);
  state.resultSeconds = total / rate;
  setStatus('Streamed ' + state.resultSeconds.toFixed(2) + ' s of audio; first audio after ' + state.ttfaMs + ' ms.');
}

// --------------------------------------------------------------------------------- jobs
function jobBody() {
  const body = {input: $('text').value, language: $('language').value,
                response_format: $('format').value, seed: seedValue()};
  if (mode() === 'design') {
    body.model = 'VoiceDesign'; body.description = $('description').value;
  } else if (mode() === 'clone') {
    throw new Error('A clone job needs a saved voice: save the cloned voice, then pick it as the voice.');
  } else {
    body.model = 'CustomVoice'; body.voice = $('voice').value;
    const instructions = $('instructions').value.trim();
    if (instructions) body.instructions = instructions;
  }
  return body;
}

function showProgress(fraction) {
  const percent = Math.round(fraction * 100);
  $('job-progress').value = percent;
  $('job-percent').textContent = percent + '%';
  state.jobProgress = percent;
}

async function submitJob() {
  const job = await callJson('/v1/jobs', jobBody());
  $('job').hidden = false;
  $('job-id').textContent = job.id;
  showProgress(0);
  setStatus('Job ' + job.id + ' queued ...');
  let status = job;
  while (status.status !== 'succeeded' && status.status !== 'failed') {
    await new Promise((resolve) => setTimeout(resolve, 400));  // poll: the job runs server-side
    status = await (await call('/v1/jobs/' + job.id)).json();
    showProgress(status.progress || 0);
    $('job-status').textContent = status.status;
  }
  if (status.status === 'failed') {
    const reason = typeof status.error === 'string' ? status.error : JSON.stringify(status.error);
    throw new Error('The job failed: ' + reason);
  }
  showProgress(1);
  const audio = await (await call('/v1/jobs/' + job.id + '/audio')).blob();
  await showResult(audio, $('format').value, 'Job ' + job.id + ' done: ' + status.audio_seconds + ' s of audio.');
}

// ------------------------------------------------------------------------- saved voices
async function refreshVoices(select) {
  const listing = await (await call('/v1/audio/voices')).json();
  const voice = $('voice');
  const keep = select || voice.value;
  voice.textContent = '';
  const groups = {saved: 'Saved voices', preset: 'Presets', openai: 'OpenAI names'};
  for (const [kind, label] of Object.entries(groups)) {
    const members = listing.voices.filter((v) => v.kind === kind);
    if (!members.length) continue;
    const group = document.createElement('optgroup');
    group.label = label;
    for (const v of members) group.appendChild(new Option(v.name, v.id));
    voice.appendChild(group);
  }
  if (keep && [...voice.options].some((o) => o.value === keep)) voice.value = keep;
  const list = $('voices-list');
  list.textContent = '';
  state.savedVoices = [];
  if (!apiKey() && CONFIG.auth_enabled) { list.appendChild(item('Save an API key to see and make saved voices.')); return; }
  const saved = (await (await call('/v1/voices')).json()).data;
  state.savedVoices = saved.map((v) => v.id);
  if (!saved.length) list.appendChild(item('No saved voices yet.'));
  for (const v of saved) {
    const li = item(v.name + ' (' + v.kind + ') ');
    const code = document.createElement('code'); code.textContent = v.id; li.appendChild(code);
    const del = document.createElement('button');
    del.type = 'button'; del.className = 'delete-voice'; del.dataset.id = v.id; del.textContent = 'Delete';
    del.addEventListener('click', () => guarded(del, async () => {
      await call('/v1/voices/' + encodeURIComponent(v.id), {method: 'DELETE'});
      setStatus('Deleted ' + v.name + '.');
      await refreshVoices();
    }));
    li.appendChild(del);
    list.appendChild(li);
  }
}

function item(text) { const li = document.createElement('li'); li.textContent = text; return li; }

async function useSavedVoice(created) {
  document.querySelector('input[name="mode"][value="custom"]').checked = true;
  applyMode();
  await refreshVoices(created.id);
  setStatus('Saved voice ' + created.name + ' (' + created.id + '); it is selected as the voice.');
}

async function createDesignedVoice() {
  setStatus('Designing and saving the voice ...');
  const created = await callJson('/v1/voices', {
    name: $('new-voice-name').value, description: $('description').value,
    language: $('language').value, seed: seedValue()});
  await useSavedVoice(created);
}

async function createClonedVoice() {
  setStatus('Cloning and saving the voice ...');
  const form = cloneForm({name: $('new-voice-name').value, consent: 'true'});
  form.delete('language');
  const language = $('language').value;
  if (language !== 'auto') form.append('language', language);
  const created = await (await call('/v1/voices', {method: 'POST', body: form})).json();
  await useSavedVoice(created);
}

// ---------------------------------------------------------------------------- recording
let recorded = null;
let recorder = null;

async function toggleRecording() {
  const button = $('record');
  if (recorder && recorder.state === 'recording') { recorder.stop(); return; }
  const media = await navigator.mediaDevices.getUserMedia({audio: true});
  const chunks = [];
  recorder = new MediaRecorder(media);
  const begun = performance.now();
  recorder.ondataavailable = (e) => {
    if (e.data.size) chunks.push(e.data);
    state.recordedSeconds = (performance.now() - begun) / 1000;
  };
  recorder.onstop = () => {
    media.getTracks().forEach((t) => t.stop());
    recorded = new Blob(chunks, {type: recorder.mimeType});
    $('ref-audio').value = '';
    $('record-status').textContent = 'Recorded ' + Math.round(recorded.size / 1024) + ' KiB.';
    button.textContent = 'Record';
  };
  state.recordedSeconds = 0;
  recorder.start(250);  // a chunk every 250 ms: the length so far is known while recording
  button.textContent = 'Stop';
  $('record-status').textContent = 'Recording ...';
}

// --------------------------------------------------------------------------------- setup
function applyMode() {
  const current = mode();
  for (const m of ['custom', 'design', 'clone']) {
    for (const el of document.querySelectorAll('.mode-' + m)) el.hidden = m !== current;
  }
}

function fillSelect(select, values, labels, chosen) {
  for (const v of values) select.appendChild(new Option(labels && labels[v] ? v + ' (' + labels[v] + ')' : v, v));
  select.value = chosen;
}

function showKeyStatus() {
  $('key-status').textContent = apiKey() ? 'key saved in this browser'
    : (CONFIG.auth_enabled ? 'no key saved' : 'this server runs without keys');
  $('api-key').value = apiKey();
}

function init() {
  fillSelect($('language'), CONFIG.languages, CONFIG.language_names, 'auto');
  fillSelect($('format'), CONFIG.formats, null, 'mp3');
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener('change', applyMode);
  applyMode();
  showKeyStatus();
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORAGE, $('api-key').value.trim());
    showKeyStatus();
    guarded($('save-key'), () => refreshVoices());
  });
  $('synthesize').addEventListener('click', () => guarded($('synthesize'), synthesize));
  $('stream').addEventListener('click', () => guarded($('stream'), stream));
  $('submit-job').addEventListener('click', () => guarded($('submit-job'), submitJob));
  $('create-designed-voice').addEventListener('click', () => guarded($('create-designed-voice'), createDesignedVoice));
  $('create-cloned-voice').addEventListener('click', () => guarded($('create-cloned-voice'), createClonedVoice));
  $('refresh-voices').addEventListener('click', () => guarded($('refresh-voices'), () => refreshVoices()));
  $('record').addEventListener('click', () => guarded($('record'), toggleRecording));
  $('ref-audio').addEventListener('change', () => { recorded = null; $('record-status').textContent = ''; });
  guarded($('refresh-voices'), () => refreshVoices());
}

init();
