// The Qwen3-TTS Serve playground: plain browser JavaScript, no build step, no third-party code.
// Every call goes to this server's public API with the key typed once (localStorage, sent as
// a Bearer header, never in a URL). Errors show the server's own message (its error envelope).
// Each action's result appears right under it, and starting an action clears what the last
// one left (status, figures, errors, job bar); one audio plays at a time.
'use strict';

const CONFIG = JSON.parse(document.getElementById('qtts-config').textContent);
const BASE = location.pathname.replace(/\/playground\/?$/, '');  // the app's route prefix
const KEY_STORAGE = 'qtts.apiKey';
const $ = (id) => document.getElementById(id);

// What the tests (and a curious user, in the console) can read about the last result.
const state = window.qttsPlayground = {
  ttfaMs: null, streamedSeconds: 0, resultSeconds: 0, lastError: null, jobProgress: 0,
  recordedSeconds: 0, keyAccepted: null, jobStatuses: [],
  // the speech in the recording (or chosen file), as POST /v1/audio/analyze measures it
  speechSeconds: null, speechNeeded: null, speechEnough: null,
  savedVoices: [], words: [],  // words: the spans of the last result's words
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

function describe(error) {
  const where = error.param ? ' (' + error.param + ')' : '';
  return error instanceof ApiError
    ? 'The server said' + where + ': ' + error.message + ' [' + error.status + ' ' + error.code + ']'
    : String(error.message || error);
}

async function guarded(button, work) {
  clearError();
  button.disabled = true;
  try { await work(); } catch (error) { showError(error); } finally { button.disabled = false; }
}

// A Speak action (synthesize, stream, job): what the last one left goes first.
function action(button, work) {
  resetResult();
  return guarded(button, work);
}

function resetResult() {
  clearError();
  silence(null);
  setStatus('');
  state.ttfaMs = null; state.streamedSeconds = 0; state.resultSeconds = 0; state.jobStatuses = [];
  $('ttfa').textContent = '-'; $('stream-seconds').textContent = ''; $('ttfa-line').hidden = true;
  $('job').hidden = true; $('job-status').textContent = ''; $('job-id').textContent = '';
  const link = $('download');
  link.hidden = true; link.removeAttribute('href'); link.onclick = null;
  const player = $('player');
  player.removeAttribute('src'); player.load();
  showWords('', null);
  showCaptions(null);
  drawWaveform(new Float32Array(0));
  $('result-media').hidden = true;  // shown again with the next result
}

// ------------------------------------------------------------------ one audio at a time
let streamAudio = null;  // the AudioContext a Stream plays through, while it plays

// Stops every audio but `keep` (an <audio> element): the players, a stream, a live session.
function silence(keep) {
  for (const player of document.querySelectorAll('audio')) if (player !== keep) player.pause();
  if (streamAudio) { streamAudio.close().catch(() => {}); streamAudio = null; }
  if (keep !== 'live') stopLiveAudio();
}

// ------------------------------------------------------------------------------ inputs
function mode() { return document.querySelector('input[name="mode"]:checked').value; }

function seedValue() {
  const raw = $('seed').value.trim();
  return raw === '' ? undefined : Number(raw);  // the server validates it, not the page
}

function showReference(blob) {
  const player = $('ref-player');
  if (player.src) URL.revokeObjectURL(player.src);
  if (!blob) { player.removeAttribute('src'); player.hidden = true; return; }
  player.src = URL.createObjectURL(blob);
  player.hidden = false;
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
  $('result-media').hidden = false;
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

// Saves `blob` as `name` through a temporary link (a download the browser names).
function saveBlob(blob, name) {
  const a = document.createElement('a');
  a.href = URL.createObjectURL(blob); a.download = name;
  document.body.appendChild(a); a.click(); a.remove();
  setTimeout(() => URL.revokeObjectURL(a.href), 60000);
}

// ------------------------------------------------------------------- word timestamps
// The words of the last result (`timestamps: "word"`, docs/api.md), in the text as typed,
// each highlighted while the player is inside it (the last word started, between words).
function showWords(text, words) {
  const box = $('words');
  box.textContent = '';
  state.words = [];
  if (!words || !words.length) { box.hidden = true; return; }
  let at = 0;
  for (const w of words) {
    if (w.char_start > at) box.appendChild(document.createTextNode(text.slice(at, w.char_start)));
    const span = document.createElement('span');
    span.className = 'word';
    span.textContent = text.slice(w.char_start, w.char_end);
    span.dataset.start = w.start; span.dataset.end = w.end;
    box.appendChild(span);
    state.words.push(span);
    at = Math.max(at, w.char_end);
  }
  if (at < text.length) box.appendChild(document.createTextNode(text.slice(at)));
  box.hidden = false;
  highlightWord();
}

function highlightWord() {
  const t = $('player').currentTime;
  let current = -1;
  state.words.forEach((span, i) => { if (Number(span.dataset.start) <= t) current = i; });
  state.words.forEach((span, i) => span.classList.toggle('current', i === current));
}

// Follows the player every frame while it plays (timeupdate alone fires ~4 times a second).
function followWords() {
  highlightWord();
  if (!$('player').paused) requestAnimationFrame(followWords);
}

// A job's captions (GET /v1/jobs/{id}/captions.vtt, .srt) as downloads, and the WebVTT as
// the player's caption track; `jobId` null hides them.
async function showCaptions(jobId) {
  const player = $('player');
  for (const track of player.querySelectorAll('track')) { URL.revokeObjectURL(track.src); track.remove(); }
  for (const kind of ['vtt', 'srt']) {
    const link = $('captions-' + kind);
    if (link.href.startsWith('blob:')) URL.revokeObjectURL(link.href);
    link.hidden = true; link.removeAttribute('href');
  }
  if (!jobId) return;
  for (const kind of ['vtt', 'srt']) {
    const text = await (await call('/v1/jobs/' + jobId + '/captions.' + kind)).text();
    const blob = new Blob([text], {type: kind === 'vtt' ? 'text/vtt' : 'application/x-subrip'});
    const link = $('captions-' + kind);
    link.href = URL.createObjectURL(blob); link.download = 'captions.' + kind; link.hidden = false;
    if (kind === 'vtt') {
      const track = document.createElement('track');
      track.kind = 'captions'; track.label = 'Captions'; track.default = true;
      track.src = URL.createObjectURL(blob);
      player.appendChild(track);
    }
  }
}

function base64Blob(data, type) {
  const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
  return new Blob([bytes], {type: type});
}

// ----------------------------------------------------------------------- synthesize once
// A preset or saved voice asks for word timestamps: the answer is JSON with the audio.
async function synthesize() {
  const format = $('format').value;
  const timed = mode() === 'custom';
  const text = $('text').value;
  const output = {response_format: format, seed: seedValue()};
  if (timed) output.timestamps = 'word';
  const [path, options] = speechRequest(output);
  setStatus('Synthesizing ...');
  const started = performance.now();
  const response = await call(path, options);
  let blob, words = null;
  if (timed) {
    const body = await response.json();
    blob = base64Blob(body.audio, body.content_type);
    words = body.words;
  } else {
    blob = await response.blob();
  }
  const seconds = ((performance.now() - started) / 1000).toFixed(2);
  showWords(text, words);
  await showResult(blob, format, 'Done in ' + seconds + ' s (' + blob.size + ' bytes of ' + format + ').');
}

// --------------------------------------------------------------------------- streaming
// Raw 16-bit pcm, chunked: each chunk becomes an AudioBuffer scheduled right after the last.
// The download is in the chosen Format: pcm and wav from the streamed samples; any other
// format is rendered once more, non-streamed, when Download is pressed, with the same seed
// (drawn here when the Seed box is empty), so it is the same audio.
async function stream() {
  const format = $('format').value;
  const seed = seedValue() === undefined ? Math.floor(Math.random() * 2 ** 31) : seedValue();
  const [path, options] = speechRequest({response_format: 'pcm', stream_format: 'audio', seed});
  const audio = streamAudio = new AudioContext();
  await audio.resume();
  state.ttfaMs = null; state.streamedSeconds = 0;
  $('ttfa-line').hidden = false;
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
    if (streamAudio === audio) playhead = schedulePcm(audio, int16, rate, playhead)[1];
    state.streamedSeconds += int16.length / rate;
    $('stream-seconds').textContent = '(' + state.streamedSeconds.toFixed(2) + ' s received)';
  }
  const wav = showPcm(parts, rate, $('player'), $('download'));
  streamDownload(format, wav, parts, seed);
  setStatus('Streamed ' + state.resultSeconds.toFixed(2) + ' s of audio; first audio after ' + state.ttfaMs + ' ms.');
}

function streamDownload(format, wav, parts, seed) {
  const link = $('download');
  link.download = 'speech.' + extensionOf(format);
  link.textContent = 'Download ' + format;
  if (format === 'wav') return;  // showPcm made it
  if (format === 'pcm') { link.href = URL.createObjectURL(new Blob(parts, {type: 'audio/pcm'})); return; }
  link.href = '#';
  link.onclick = (event) => {
    event.preventDefault();
    guarded(link, async () => {
      setStatus('Rendering the ' + format + ' file of the same audio ...');
      const [path, options] = speechRequest({response_format: format, seed});
      saveBlob(await (await call(path, options)).blob(), link.download);
      setStatus('Downloaded the ' + format + ' file.');
    });
  };
}

// Streamed pcm pieces (Int16Arrays) as a result in `player`, with a wav download in `link`
// (and the waveform, for the Speak result). Returns the wav.
function showPcm(parts, rate, player, link) {
  const total = parts.reduce((n, p) => n + p.length, 0);
  const all = new Int16Array(total);
  let at = 0;
  for (const p of parts) { all.set(p, at); at += p.length; }
  const wav = wavFromPcm(all, rate);
  if (player.src) URL.revokeObjectURL(player.src);
  player.src = URL.createObjectURL(wav);
  player.hidden = false;
  link.href = player.src; link.download = 'speech.wav'; link.textContent = 'Download wav'; link.hidden = false;
  if (player === $('player')) {
    $('result-media').hidden = false;
    const floats = new Float32Array(total);
    for (let i = 0; i < total; i++) floats[i] = all[i] / 32768;
    drawWaveform(floats);
    state.resultSeconds = total / rate;
  }
  return wav;
}

// Schedules s16le pcm right after what is already scheduled on `audio` (gap-free playback of
// pieces as they arrive). Returns [the source node, the time it ends].
function schedulePcm(audio, int16, rate, at) {
  const buffer = audio.createBuffer(1, int16.length, rate);
  const channel = buffer.getChannelData(0);
  for (let i = 0; i < int16.length; i++) channel[i] = int16[i] / 32768;
  const source = audio.createBufferSource();
  source.buffer = buffer;
  source.connect(audio.destination);
  const start = Math.max(at, audio.currentTime);
  source.start(start);
  return [source, start + buffer.duration];
}

// ------------------------------------------------------------ type and hear (WebSocket)
// A speech session on /v1/audio/speech/stream (docs/streaming.md). The first message holds
// the settings (the voice, language and seed above) and, since a browser cannot set headers
// on a WebSocket, the key; then what is typed goes as text deltas: up to the last word
// boundary at once, the rest after a pause in typing. "Speak now" sends `flush`, "Stop"
// `cancel`, "Finish" `close`. The server answers `audio.span` events, each followed by one
// binary frame of raw s16le pcm (the format a browser plays without a decoder), played
// gap-free with Web Audio, then `done` with the usage; errors are `error` events, then the
// server closes (4000 + the HTTP status, or 1008 for keys).
const LIVE_PATH = '/v1/audio/speech/stream';
const LIVE_PAUSE_MS = 400;          // a pause in typing this long sends the unfinished word
const LIVE_BOUNDARY = /[\s,;:。！？；，、]/;  // a word ends here: what comes before it is sent at once
const LIVE_SENTENCE_END = /[.!?…]["'”’)\]]*$/;  // after a pause, text ending so is spoken (flush)
let live = null;          // the session now open (or finishing), or null
let liveSent = 0;         // characters of #live-text already sent, to this or an earlier session
let livePause = null;     // the pause timer
let liveAudio = null;     // one AudioContext for every session: a new one's audio plays after the last
let livePlayhead = 0;     // when the audio scheduled so far ends, on liveAudio's clock
const liveSources = new Set();  // scheduled session audio not yet played, stopped by Stop

// Silences the sessions' audio (another result starts playing): the open session is cancelled.
function stopLiveAudio() {
  if (live && !live.cancelling) liveStop();
  for (const source of liveSources) { try { source.stop(); } catch (_) { /* not started */ } }
  liveSources.clear();
  if (liveAudio) livePlayhead = liveAudio.currentTime;
}

state.live = {ttfaMs: null, sentenceMs: null, seconds: 0, done: null, error: null, closeCode: null,
              sessionId: null, mode: null, text: '', sessions: 0};

function wsUrl(path) {
  return (location.protocol === 'https:' ? 'wss://' : 'ws://') + location.host + BASE + path;
}

function liveSettings() {
  const settings = {type: 'session', mode: $('live-mode').value, language: $('language').value,
                    response_format: 'pcm'};
  const seed = seedValue();
  if (seed !== undefined) settings.seed = seed;
  if (mode() === 'design') {
    settings.model = 'VoiceDesign';
    settings.instructions = $('description').value;
  } else if (mode() === 'clone') {
    throw new Error('A session speaks with a saved voice: save the cloned voice, then pick it as the voice.');
  } else {
    settings.model = 'CustomVoice';
    settings.voice = $('voice').value;
    const instructions = $('instructions').value.trim();
    if (instructions) settings.instructions = instructions;
  }
  if (apiKey()) settings.api_key = apiKey();
  return settings;
}

function setLiveState(text) { $('live-state').textContent = text; }

function showLiveError(text) {
  const box = $('live-error');
  box.textContent = text;
  box.hidden = false;
  state.live.error = text;
}

function clearLiveError() { $('live-error').hidden = true; $('live-error').textContent = ''; state.live.error = null; }

class LiveSession {
  constructor() {
    this.settings = liveSettings();  // may throw (a clone without a saved voice): nothing opened
    this.startOffset = liveSent;     // where this session's text starts in #live-text
    this.text = '';                  // the session's text: every delta sent, concatenated
    this.sent = [];                  // [text length after it, time, 'text' | 'flush' | 'close'] per message
    this.queue = [];                 // messages typed while the socket was still connecting
    this.parts = [];                 // the pcm received (Int16Arrays), for the result player
    this.carry = new Uint8Array(0);  // an odd byte at the end of a frame
    this.rate = 24000;
    this.closing = false; this.cancelling = false; this.finished = false; this.failed = false;
    if (!liveAudio) liveAudio = new AudioContext();
    liveAudio.resume().catch(() => { /* no gesture yet: it resumes on the next one */ });
    $('live-player').hidden = true; $('live-download').hidden = true;
    Object.assign(state.live, {ttfaMs: null, ttfaSince: null, sentenceMs: null, seconds: 0, done: null, closeCode: null,
                               sessionId: null, mode: this.settings.mode, text: ''});
    state.live.sessions += 1;
    clearLiveError();
    $('live-ttfa').textContent = 'waiting ...';
    $('live-seconds').textContent = '';
    $('live-usage').textContent = '';
    setLiveState('Connecting ...');
    this.ws = new WebSocket(wsUrl(LIVE_PATH));
    this.ws.binaryType = 'arraybuffer';
    this.ws.onopen = () => {
      this.ws.send(JSON.stringify(this.settings));
      for (const message of this.queue.splice(0)) this.ws.send(message);
    };
    this.ws.onmessage = (event) => this.receive(event.data);
    this.ws.onclose = (event) => this.closed(event);
  }

  send(message) {
    const raw = JSON.stringify(message);
    if (this.ws.readyState === WebSocket.CONNECTING) this.queue.push(raw);
    else if (this.ws.readyState === WebSocket.OPEN) this.ws.send(raw);
  }

  delta(text) {
    if (!text) return;
    this.text += text;
    state.live.text = this.text;
    this.sent.push([this.text.length, performance.now(), 'text']);
    this.send({type: 'text', text});
  }

  flush() { this.sent.push([this.text.length, performance.now(), 'flush']); this.send({type: 'flush'}); }

  finish() {
    this.closing = true;
    this.sent.push([this.text.length, performance.now(), 'close']);
    this.send({type: 'close'});
    setLiveState('Finishing: speaking the rest ...');
  }

  cancel() {
    this.cancelling = true;
    this.send({type: 'cancel'});
    for (const source of liveSources) { try { source.stop(); } catch (_) { /* not started */ } }
    liveSources.clear();
    livePlayhead = liveAudio.currentTime;
    setLiveState('Stopping ...');
  }

  receive(data) {
    if (data instanceof ArrayBuffer) { this.play(new Uint8Array(data)); return; }
    const event = JSON.parse(data);
    if (event.type === 'session.created') {
      this.rate = event.sample_rate;
      state.live.sessionId = event.session_id;
      setLiveState('Session ' + event.session_id + ' (' + event.mode + ' mode): speaking as you type.');
    } else if (event.type === 'audio.span') {
      if (this.span === undefined) this.firstSpan = event.span;
      this.span = event.span;
    } else if (event.type === 'done') {
      this.done(event);
    } else if (event.type === 'error') {
      const err = event.error || {};
      const where = err.param ? ' (' + err.param + ')' : '';
      this.failed = true;
      showLiveError('The server said' + where + ': ' + (err.message || 'an error') + ' [' + (err.code || 'error') + ']');
    }
  }

  // When the first spoken span's text was complete, as [time, what completed it]: the first
  // message after which the server could cut it (docs/streaming.md): text past its end, text
  // up to its end when that ends in whitespace or a CJK mark (a sentence's trailing space is
  // part of its span), or a flush / close that covers it.
  sentenceReadyAt(span) {
    const cut = /[\s。！？；…]$/.test(this.text.slice(0, span.end));
    for (const [length, at, kind] of this.sent) {
      if (length > span.end || (length === span.end && (kind !== 'text' || cut))) return [at, kind];
    }
    return null;
  }

  // The first audio's figure, from the moment it could have started: in sentence mode when
  // its sentence was complete (or flushed), in incremental mode when the first words went.
  firstAudioFigure(now) {
    const ready = this.settings.mode === 'sentence' && this.firstSpan
      ? this.sentenceReadyAt(this.firstSpan) : null;
    if (ready) {
      const since = {text: 'its sentence was complete', flush: 'Speak now', close: 'Finish'}[ready[1]];
      return [Math.max(0, Math.round(now - ready[0])), 'after ' + since];
    }
    return [Math.max(0, Math.round(now - this.sent[0][1])), 'after the first words were sent'];
  }

  play(bytes) {
    if (this.cancelling) return;  // the rest of a frame in flight when "Stop" was pressed
    const joined = new Uint8Array(this.carry.length + bytes.length);
    joined.set(this.carry); joined.set(bytes, this.carry.length);
    const even = joined.length - (joined.length % 2);
    this.carry = joined.slice(even);
    if (!even) return;
    const int16 = new Int16Array(joined.slice(0, even).buffer);
    const now = performance.now();
    if (state.live.ttfaMs === null && this.sent.length) {
      silence('live');  // one audio at a time: a result playing above stops
      const [ms, since] = this.firstAudioFigure(now);
      state.live.ttfaMs = ms;
      state.live.ttfaSince = since;
      state.live.sentenceMs = since === 'after its sentence was complete' ? ms : null;
      $('live-ttfa').textContent = ms + ' ms ' + since;
    }
    this.parts.push(int16);
    const [source, end] = schedulePcm(liveAudio, int16, this.rate, livePlayhead);
    livePlayhead = end;
    liveSources.add(source);
    source.onended = () => liveSources.delete(source);
    state.live.seconds += int16.length / this.rate;
    $('live-seconds').textContent = '(' + state.live.seconds.toFixed(2) + ' s received)';
  }

  done(event) {
    this.finished = true;
    state.live.done = event;
    const u = event.usage;
    $('live-usage').textContent = (event.cancelled ? 'Stopped. ' : 'Done. ') + 'Usage: ' + u.characters
      + ' characters, ' + u.audio_seconds.toFixed(2) + ' s of audio, ' + u.requests + ' request'
      + (u.requests === 1 ? '' : 's') + '.';
    setLiveState(event.cancelled ? 'Stopped.' : 'Finished.');
    if (state.live.ttfaMs === null) $('live-ttfa').textContent = '-';
    this.ws.close(1000);  // the client closes after done (docs/streaming.md)
    if (this.parts.length) showPcm(this.parts, this.rate, $('live-player'), $('live-download'));
  }

  closed(event) {
    state.live.closeCode = event.code;
    if (this.failed) {
      state.live.error += ' (closed ' + event.code + ')';
      $('live-error').textContent = state.live.error;
      setLiveState('Failed.');
      $('live-ttfa').textContent = state.live.ttfaMs === null ? '-' : $('live-ttfa').textContent;
      // Nothing was spoken: the next session (e.g. after fixing the key or mode) sends it again.
      if (!this.parts.length && live === this) liveSent = Math.min(liveSent, this.startOffset);
    } else if (!this.finished) {
      showLiveError('The connection closed before the session finished (code ' + event.code
        + (event.reason ? ': ' + event.reason : '') + ').');
      setLiveState('Failed.');
    }
    if (live === this) live = null;
    updateLiveButtons();
    if (this.failed || !this.finished) { clearTimeout(livePause); return; }  // no retry until typed
    if ($('live-text').value.length > liveSent) schedulePause();  // typed while it was finishing
  }
}

function updateLiveButtons() {
  $('live-stop').disabled = !live;
  const ending = !!(live && (live.closing || live.cancelling));
  $('live-finish').disabled = ending;
  $('live-flush').disabled = ending;
}

// The open session, or a new one; null while one is finishing (what is typed then waits).
function liveSession() {
  if (live) return live.closing || live.cancelling ? null : live;
  try {
    live = new LiveSession();
  } catch (error) {
    showLiveError(String(error.message || error));
    return null;
  }
  updateLiveButtons();
  return live;
}

// Sends #live-text from what was sent up to `end` (default: all of it).
function sendLive(end) {
  const value = $('live-text').value;
  if (value.length < liveSent) liveSent = value.length;  // deleted: typing goes on from here
  const upto = end === undefined ? value.length : end;
  if (upto <= liveSent) return live;
  const session = liveSession();
  if (!session) return null;
  session.delta(value.slice(liveSent, upto));
  liveSent = upto;
  return session;
}

function schedulePause() {
  clearTimeout(livePause);
  livePause = setTimeout(() => {
    const session = sendLive();
    if (session && !session.closing && !session.cancelling && LIVE_SENTENCE_END.test(session.text)) session.flush();
  }, LIVE_PAUSE_MS);
}

function onLiveInput() {
  const value = $('live-text').value;
  if (value.length < liveSent) liveSent = value.length;
  const pending = value.slice(liveSent);
  let boundary = -1;
  for (let i = pending.length - 1; i >= 0; i--) if (LIVE_BOUNDARY.test(pending[i])) { boundary = i; break; }
  if (boundary >= 0) sendLive(liveSent + boundary + 1);
  schedulePause();
}

function liveFlush() {
  clearTimeout(livePause);
  if (!live && $('live-text').value.length <= liveSent) { showLiveError('Type something first.'); return; }
  const session = sendLive();
  if (session && !session.closing && !session.cancelling) session.flush();
}

function liveFinish() {
  clearTimeout(livePause);
  const session = sendLive();
  if (session && !session.closing && !session.cancelling) { session.finish(); updateLiveButtons(); }
}

function liveStop() {
  clearTimeout(livePause);
  if (live && !live.cancelling) {
    liveSent = $('live-text').value.length;  // what was typed and not sent yet is dropped too
    live.cancel();
    updateLiveButtons();
  }
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
  let status = job;
  const show = () => {  // the status line and the bar say the same, at every poll
    showProgress(status.progress || 0);
    $('job-status').textContent = status.status;
    setStatus('Job ' + job.id + ' ' + status.status + ' (' + state.jobProgress + '%) ...');
    if (state.jobStatuses[state.jobStatuses.length - 1] !== status.status) state.jobStatuses.push(status.status);
  };
  show();
  while (status.status !== 'succeeded' && status.status !== 'failed') {
    await new Promise((resolve) => setTimeout(resolve, 400));  // poll: the job runs server-side
    status = await (await call('/v1/jobs/' + job.id)).json();
    show();
  }
  if (status.status === 'failed') {
    const reason = typeof status.error === 'string' ? status.error : JSON.stringify(status.error);
    throw new Error('The job failed: ' + reason);
  }
  showProgress(1);
  const audio = await (await call('/v1/jobs/' + job.id + '/audio')).blob();
  await showCaptions(job.id);
  await showResult(audio, $('format').value, 'Job ' + job.id + ' done: ' + status.audio_seconds + ' s of audio.');
}

// ------------------------------------------------------------------------- saved voices
// The voice list (presets, OpenAI names, the key's saved voices) and the key's state. A key
// the server refuses is said so next to it, and no tenant's voices stay listed.
async function refreshVoices(select) {
  const list = $('voices-list');
  list.textContent = '';
  state.savedVoices = [];
  let listing;
  try {
    listing = await (await call('/v1/audio/voices')).json();
    if (apiKey()) showKeyStatus(true);
  } catch (error) {
    if (!(error instanceof ApiError) || (error.status !== 401 && error.status !== 403)) throw error;
    showKeyStatus(false, error);
    listing = await (await fetch(BASE + '/v1/audio/voices')).json();  // the public listing
  }
  const voice = $('voice');
  const keep = select || voice.value || CONFIG.default_voice;
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
  const same = (o) => o.value === keep || o.value.toLowerCase() === String(keep).toLowerCase();
  const chosen = keep ? [...voice.options].find(same) : null;
  if (chosen) voice.value = chosen.value;
  if (state.keyAccepted === false) { list.appendChild(item('Save a key the server accepts to see and make saved voices.')); return; }
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
      if (!confirm('Delete the saved voice "' + v.name + '" (' + v.id + ')? Requests that name it will fail.')) return;
      setStatus('');
      await call('/v1/voices/' + encodeURIComponent(v.id), {method: 'DELETE'});
      setStatus('Deleted ' + v.name + '.');
      await refreshVoices();
    }));
    li.appendChild(del);
    list.appendChild(li);
  }
}

function item(text) { const li = document.createElement('li'); li.textContent = text; return li; }

// --------------------------------------------------------------------------------- usage
// GET /v1/usage: the month's cost (integer minor units of the server's currency), per model,
// and the plan's included quota used and left.
function money(minor, currency) {
  const format = new Intl.NumberFormat(undefined, {style: 'currency', currency: currency});
  const digits = format.resolvedOptions().maximumFractionDigits;
  return format.format(minor / Math.pow(10, digits));
}

async function refreshUsage() {
  const rows = $('usage-rows'), quota = $('usage-quota');
  rows.textContent = ''; quota.textContent = ''; $('usage-total').textContent = '';
  $('usage-plan').textContent = ''; $('usage-table').hidden = true;
  if (!apiKey() && CONFIG.auth_enabled) { quota.appendChild(item('Save an API key to see its usage.')); return; }
  if (state.keyAccepted === false) return;
  let u;
  try {
    u = await (await call('/v1/usage')).json();
  } catch (error) {  // a key scoped to other endpoints: say so here, not as a page error
    if (!(error instanceof ApiError) || error.status !== 403) throw error;
    quota.appendChild(item('This key may not read usage: ' + error.message));
    return;
  }
  $('usage-plan').textContent = u.plan ? 'Plan ' + u.plan.name + ' v' + u.plan.version +
    (u.plan.overage === 'block' ? ' (stops at the included quota)' : ' (bills past the included quota)') : 'No plan';
  for (const [model, m] of Object.entries(u.by_model)) {
    const tr = document.createElement('tr');
    for (const value of [model, m.requests, m.characters, m.audio_seconds, money(m.cost, u.currency)]) {
      const td = document.createElement('td'); td.textContent = String(value); tr.appendChild(td);
    }
    rows.appendChild(tr);
  }
  $('usage-table').hidden = !rows.children.length;
  const names = {characters: 'characters', audio_seconds: 'seconds of audio', voice_clones: 'voice clones'};
  for (const [name, q] of Object.entries(u.included || {})) {
    quota.appendChild(item(q.included === null ? 'Unlimited ' + names[name] + ' (' + q.used + ' used)'
      : q.used + ' of ' + q.included + ' included ' + names[name] + ' used, ' + q.remaining + ' left'));
  }
  $('usage-total').textContent = 'Cost so far: ' + money(u.cost, u.currency);
}

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
let recordNote = '';  // "Recording ... 2.0 s" / "Recorded 3.1 s: play it back below."
let analysisAsked = 0;  // analyses are numbered: an older answer never replaces a newer one
let analysisShown = 0;
let analyzing = false;

// The speech the reference holds, by the detector the clone path screens with (silero-vad on
// the server): shown while recording, so a person knows when they have said enough.
function speechNote() {
  if (state.speechSeconds === null) return '';
  const seconds = 'speech: ' + state.speechSeconds.toFixed(1) + ' s';
  if (!state.speechNeeded) return seconds;
  return seconds + ' of ' + state.speechNeeded + ' s needed' + (state.speechEnough ? '' : ' (not enough yet)');
}

function showRecordStatus() {
  const note = speechNote();
  const status = $('record-status');
  status.textContent = recordNote + (recordNote && note ? ' \u00b7 ' : '') + note;
  status.classList.toggle('error-text', state.speechEnough === false && !(recorder && recorder.state === 'recording'));
}

function resetSpeech() {
  state.speechSeconds = state.speechNeeded = state.speechEnough = null;
  analysisShown = ++analysisAsked;  // answers still on their way are dropped
}

// `always`: even while an earlier analysis is in flight (the final one, a chosen file).
async function analyzeAudio(blob, always) {
  if (analyzing && !always) return;
  const asked = ++analysisAsked;
  analyzing = true;
  try {
    const response = await call('/v1/audio/analyze', {
      method: 'POST', headers: {'Content-Type': blob.type || 'application/octet-stream'}, body: blob});
    const found = await response.json();
    if (asked < analysisShown) return;
    analysisShown = asked;
    state.speechSeconds = found.speech_seconds;
    state.speechNeeded = found.min_speech_seconds;
    state.speechEnough = found.enough_speech;
    showRecordStatus();
  } catch (_) {
    // the first fraction of a second may not decode yet: the next analysis tells
  } finally {
    analyzing = false;
  }
}

async function toggleRecording() {
  const button = $('record');
  if (recorder && recorder.state === 'recording') { recorder.stop(); return; }
  const media = await navigator.mediaDevices.getUserMedia({audio: true});
  const chunks = [];
  recorder = new MediaRecorder(media);
  const begun = performance.now();
  let analyzedAt = 0;
  recorder.ondataavailable = (e) => {
    if (e.data.size) chunks.push(e.data);
    state.recordedSeconds = (performance.now() - begun) / 1000;
    if (recorder.state === 'recording') {
      recordNote = 'Recording ... ' + state.recordedSeconds.toFixed(1) + ' s';
      showRecordStatus();
      if (state.recordedSeconds - analyzedAt >= 1 && !analyzing) {  // about once a second
        analyzedAt = state.recordedSeconds;
        analyzeAudio(new Blob(chunks, {type: recorder.mimeType}));
      }
    }
  };
  recorder.onstop = () => {
    media.getTracks().forEach((t) => t.stop());
    recorded = new Blob(chunks, {type: recorder.mimeType});
    state.recordedSeconds = (performance.now() - begun) / 1000;
    $('ref-audio').value = '';
    recordNote = 'Recorded ' + state.recordedSeconds.toFixed(1) + ' s: play it back below.';
    showRecordStatus();
    showReference(recorded);
    button.textContent = 'Record';
    analyzeAudio(recorded, true);
  };
  state.recordedSeconds = 0;
  resetSpeech();
  showReference(null);
  recorder.start(250);  // a chunk every 250 ms: the length so far is known while recording
  button.textContent = 'Stop';
  recordNote = 'Recording ... 0.0 s';
  showRecordStatus();
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

// `accepted`: true / false once the server answered with the key, undefined before.
function showKeyStatus(accepted, error) {
  state.keyAccepted = apiKey() ? (accepted === undefined ? null : accepted) : null;
  const status = $('key-status');
  status.classList.toggle('error-text', accepted === false);
  if (!apiKey()) status.textContent = CONFIG.auth_enabled ? 'No key saved.' : 'This server runs without keys.';
  else if (accepted === false) status.textContent = 'The server refused this key: ' + describe(error) + '.';
  else if (accepted) status.textContent = 'Key accepted; saved in this browser.';
  else status.textContent = 'Key saved; checking it ...';
}

function init() {
  fillSelect($('language'), CONFIG.languages, CONFIG.language_names, 'auto');
  fillSelect($('format'), CONFIG.formats, null, CONFIG.default_format);
  $('tiny-note').hidden = !CONFIG.tiny_models;
  $('api-key').value = apiKey();
  for (const radio of document.querySelectorAll('input[name="mode"]')) radio.addEventListener('change', applyMode);
  applyMode();
  showKeyStatus();
  $('key-form').addEventListener('submit', (event) => {
    event.preventDefault();
    localStorage.setItem(KEY_STORAGE, $('api-key').value.trim());
    showKeyStatus();
    setStatus('');
    guarded($('save-key'), () => refreshVoices().then(refreshUsage));
  });
  $('synthesize').addEventListener('click', () => action($('synthesize'), synthesize));
  for (const event of ['timeupdate', 'seeked']) $('player').addEventListener(event, highlightWord);
  $('player').addEventListener('play', followWords);
  $('stream').addEventListener('click', () => action($('stream'), stream));
  $('submit-job').addEventListener('click', () => action($('submit-job'), submitJob));
  for (const player of document.querySelectorAll('audio')) {
    player.addEventListener('play', () => silence(player));  // one audio at a time
  }
  $('create-designed-voice').addEventListener('click', () => guarded($('create-designed-voice'), createDesignedVoice));
  $('create-cloned-voice').addEventListener('click', () => guarded($('create-cloned-voice'), createClonedVoice));
  $('refresh-voices').addEventListener('click', () => guarded($('refresh-voices'), () => refreshVoices()));
  $('record').addEventListener('click', () => guarded($('record'), toggleRecording));
  $('live-text').addEventListener('input', onLiveInput);
  $('live-flush').addEventListener('click', liveFlush);
  $('live-stop').addEventListener('click', liveStop);
  $('live-finish').addEventListener('click', liveFinish);
  updateLiveButtons();
  $('ref-audio').addEventListener('change', () => {
    const file = $('ref-audio').files[0] || null;
    recorded = null; recordNote = ''; resetSpeech(); showRecordStatus();
    showReference(file);
    if (file) analyzeAudio(file, true);
  });
  $('refresh-usage').addEventListener('click', () => guarded($('refresh-usage'), refreshUsage));
  guarded($('refresh-voices'), () => refreshVoices().then(refreshUsage));
}

init();
