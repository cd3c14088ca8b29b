// Shared helpers for the upload (/) and recipient (/d) pages. Plain browser ES module, no build step.
// Everything that reaches the DOM goes through textContent or createElement: no HTML strings.
import { WORDING } from '/static/wording.js';

/**
 * Limits the server substituted into <body data-*> when it started (app/pages/pages.routes.ts): the
 * server's configuration is their only source, so a missing one is a deployment bug, not a default.
 */
export function readLimits() {
  const data = document.body.dataset;
  const names = [
    'maxFileSize',
    'maxFilesPerUpload',
    'defaultExpiryMinutes',
    'maxExpiryMinutes',
    'defaultUses',
    'maxUses',
    'defaultWords',
    'minWords',
    'maxWords',
  ];
  const limits = {};
  for (const name of names) {
    const n = Number(data[name]);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`page limit ${name} is missing`);
    limits[name] = n;
  }
  return limits;
}

export function $(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`missing #${id}`);
  return found;
}

/** Small DOM builder: el('p', { className: 'x' }, 'text', childNode). Properties, not HTML. */
export function el(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (key.startsWith('aria-') || key.startsWith('data-') || key === 'role') node.setAttribute(key, String(value));
    else node[key] = value;
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) continue;
    node.append(typeof child === 'string' ? document.createTextNode(child) : child);
  }
  return node;
}

const plural = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;

export function formatBytes(bytes) {
  if (!Number.isFinite(bytes) || bytes < 0) return '';
  if (bytes < 1024) return plural(bytes, 'byte');
  const units = ['KB', 'MB', 'GB', 'TB'];
  let value = bytes / 1024;
  let unit = 0;
  while (value >= 1024 && unit < units.length - 1) {
    value /= 1024;
    unit += 1;
  }
  const digits = value < 10 ? 1 : 0;
  return `${value.toFixed(digits).replace(/\.0$/, '')} ${units[unit]}`;
}

/** "45 seconds", "3 minutes", "1 hour 5 minutes", "2 days 3 hours": for sentences and screen readers. */
export function formatDuration(totalSeconds) {
  const s = Math.max(0, Math.round(totalSeconds));
  if (s < 60) return plural(s, 'second');
  const minutes = Math.round(s / 60);
  if (minutes < 60) return plural(minutes, 'minute');
  const hours = Math.floor(minutes / 60);
  const restMinutes = minutes % 60;
  if (hours < 24) return restMinutes ? `${plural(hours, 'hour')} ${plural(restMinutes, 'minute')}` : plural(hours, 'hour');
  const days = Math.floor(hours / 24);
  const restHours = hours % 24;
  return restHours ? `${plural(days, 'day')} ${plural(restHours, 'hour')}` : plural(days, 'day');
}

/** A compact, ticking clock: "9:05", "1:02:03", "2 d 03:04:05". */
export function formatClock(totalSeconds) {
  const s = Math.max(0, Math.floor(totalSeconds));
  const days = Math.floor(s / 86400);
  const hours = Math.floor((s % 86400) / 3600);
  const minutes = Math.floor((s % 3600) / 60);
  const seconds = s % 60;
  const two = (n) => String(n).padStart(2, '0');
  if (days > 0) return `${days} d ${two(hours)}:${two(minutes)}:${two(seconds)}`;
  if (hours > 0) return `${hours}:${two(minutes)}:${two(seconds)}`;
  return `${minutes}:${two(seconds)}`;
}

/** Minutes option label: "30 seconds", "10 minutes", "1 hour", "1 day". */
export function formatMinutes(minutes) {
  if (minutes < 1) return formatDuration(minutes * 60);
  if (minutes % 1440 === 0) return plural(minutes / 1440, 'day');
  if (minutes % 60 === 0) return plural(minutes / 60, 'hour');
  if (minutes > 60) return formatDuration(minutes * 60);
  return plural(minutes, 'minute');
}

/** Local wall-clock time of a date: "14:05", or "Mon 24 Nov, 14:05" when it is not today. */
export function formatTime(date) {
  const sameDay = date.toDateString() === new Date().toDateString();
  const options = sameDay
    ? { hour: '2-digit', minute: '2-digit' }
    : { weekday: 'short', day: 'numeric', month: 'short', hour: '2-digit', minute: '2-digit' };
  return new Intl.DateTimeFormat(undefined, options).format(date);
}

/** Polite announcements for screen readers through one shared, visually hidden live region. */
export function announce(message) {
  const region = document.getElementById('announcer');
  if (!region) return;
  // Clearing first makes a repeated message ("Copied") be read again.
  region.textContent = '';
  setTimeout(() => {
    region.textContent = message;
  }, 50);
}

/**
 * Copies text; falls back to selecting the element's text so the person can press Ctrl+C / long-press.
 * The button shows "Copied" briefly and the live region announces it.
 */
export function attachCopyButton(button, getText, valueElement) {
  const label = button.textContent;
  let timer;
  button.addEventListener('click', async () => {
    const text = getText();
    let copied = false;
    try {
      if (navigator.clipboard && window.isSecureContext) {
        await navigator.clipboard.writeText(text);
        copied = true;
      }
    } catch {
      copied = false;
    }
    if (!copied) {
      selectText(valueElement);
      try {
        copied = document.execCommand('copy');
      } catch {
        copied = false;
      }
    }
    clearTimeout(timer);
    if (copied) {
      button.textContent = 'Copied';
      button.classList.add('is-done');
      announce('Copied');
    } else {
      button.textContent = 'Selected';
      announce('Selected. Press Control C, or Command C, to copy.');
    }
    timer = setTimeout(() => {
      button.textContent = label;
      button.classList.remove('is-done');
    }, 2000);
  });
}

function selectText(node) {
  const selection = window.getSelection();
  if (!selection) return;
  const range = document.createRange();
  range.selectNodeContents(node);
  selection.removeAllRanges();
  selection.addRange(range);
}

/**
 * A live countdown. The visible clock ticks every second; the screen-reader region is told far less
 * often (each minute in the last ten, every ten minutes before that) so it does not chatter.
 */
export function startCountdown({ expiresAt, clock, live, onExpire }) {
  const end = expiresAt.getTime();
  let lastAnnouncedMinute = null;
  let timer = null;
  const tick = () => {
    const left = (end - Date.now()) / 1000;
    if (left <= 0) {
      clock.textContent = '0:00';
      if (live) live.textContent = 'The file has expired.';
      stop();
      onExpire?.();
      return;
    }
    clock.textContent = formatClock(left);
    const minutes = Math.ceil(left / 60);
    if (live && minutes !== lastAnnouncedMinute && (lastAnnouncedMinute === null || minutes <= 10 || minutes % 10 === 0)) {
      lastAnnouncedMinute = minutes;
      live.textContent = minutes <= 1 ? 'Less than a minute left.' : `${formatDuration(minutes * 60)} left.`;
    }
  };
  const stop = () => {
    if (timer !== null) clearInterval(timer);
    timer = null;
  };
  tick();
  if (end > Date.now()) timer = setInterval(tick, 1000);
  return { stop };
}

/** Normalises the JSON error envelope (and a few non-JSON failures) into one plain object. */
export function parseApiError(status, body, retryAfterHeader) {
  const error = body && typeof body === 'object' && body.error && typeof body.error === 'object' ? body.error : {};
  const details = error.details;
  let reason = typeof error.reason === 'string' ? error.reason : undefined;
  if (!reason && details && typeof details === 'object') {
    if (Array.isArray(details)) reason = details.find((d) => d && typeof d.reason === 'string')?.reason;
    else if (typeof details.reason === 'string') reason = details.reason;
  }
  let retryAfter = Number(error.retry_after_seconds);
  if (!Number.isFinite(retryAfter) || retryAfter <= 0) {
    const header = Number(retryAfterHeader);
    retryAfter = Number.isFinite(header) && header > 0 ? header : undefined;
  }
  return {
    status,
    code: typeof error.code === 'string' ? error.code : fallbackCode(status),
    message: typeof error.message === 'string' ? error.message : '',
    requestId: typeof error.request_id === 'string' ? error.request_id : undefined,
    retryAfter,
    reason,
  };
}

function fallbackCode(status) {
  if (status === 0) return 'NETWORK_ERROR';
  if (status === 413) return 'FILE_TOO_LARGE';
  if (status === 415) return 'UNSUPPORTED_MEDIA_TYPE';
  if (status === 429) return 'RATE_LIMITED';
  if (status === 503 || status === 502 || status === 504) return 'SERVICE_UNAVAILABLE';
  if (status === 507) return 'INSUFFICIENT_STORAGE';
  return 'UNKNOWN';
}

/** Words for a person, per error code. `limits` lets messages name the real limits. */
export function describeError(err, limits) {
  const wait = err.retryAfter ? formatDuration(err.retryAfter) : 'a little while';
  switch (err.code) {
    case 'NETWORK_ERROR':
      return { title: 'Connection lost', text: 'The connection to Cinderbox failed. Check your network and try again.' };
    case 'FILE_TOO_LARGE':
      return {
        title: 'File too large',
        text: `This upload is larger than the ${formatBytes(limits.maxFileSize)} limit (for several files, their total).`,
      };
    case 'UNSUPPORTED_MEDIA_TYPE':
      return { title: 'File type not accepted', text: 'This server does not accept this type of file.' };
    case 'RATE_LIMITED':
      return { title: 'Too many requests', text: `Too many requests came from your network. Try again in ${wait}.` };
    case 'IP_BLOCKED':
      return {
        title: 'Temporarily blocked',
        text: `Too many wrong passphrases came from your network, so lookups are paused. Try again in ${wait}.`,
      };
    case 'INSUFFICIENT_STORAGE':
      return { title: 'Server is full', text: 'The server has no room for this file right now. Try again later, or send a smaller file.' };
    case 'SERVICE_UNAVAILABLE':
      return { title: 'Temporarily unavailable', text: 'Cinderbox cannot reach its storage right now. Try again in a minute.' };
    case 'FILE_NOT_FOUND':
      return {
        title: 'No file matches this passphrase',
        text: 'Check the words and try again. After several wrong tries, your network is blocked for a while.',
      };
    case 'FILE_GONE':
      return { title: 'This file is gone', text: WORDING.gone[err.reason] ?? 'This file no longer exists.' };
    case 'INVALID_DELETE_TOKEN':
      return { title: 'Could not delete', text: 'The server did not accept the delete token for this file.' };
    case 'VALIDATION_FAILED':
    case 'MISSING_FILE':
      return { title: 'Something is not right', text: err.message || 'The request was not accepted. Check the form and try again.' };
    default:
      return {
        title: 'Something went wrong',
        text: err.message || `The server answered with an unexpected error (${err.status}). Try again in a moment.`,
      };
  }
}

/** Fills an alert container: a strong title, a sentence, and the request id for support. */
export function showError(container, err, limits) {
  const { title, text } = describeError(err, limits);
  const parts = [el('p', { className: 'alert-title' }, title), el('p', {}, text)];
  if (err.requestId) parts.push(el('p', { className: 'alert-ref' }, `Reference: ${err.requestId}`));
  container.replaceChildren(...parts);
}

export function clearError(container) {
  container.replaceChildren();
}

/**
 * JSON POST to our own API. The key is in the body only; no cookies, no cache, no Referer.
 * Resolves to { ok: true, data } or { ok: false, error } and never rejects.
 */
export async function postJson(url, body, headers = {}) {
  let response;
  try {
    response = await fetch(url, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'application/json', ...headers },
      body: JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
    });
  } catch {
    return { ok: false, error: parseApiError(0, null) };
  }
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (response.ok && data) return { ok: true, data };
  return { ok: false, error: parseApiError(response.status, data, response.headers.get('Retry-After')) };
}
