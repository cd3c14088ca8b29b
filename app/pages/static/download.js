// Recipient page (GET /d): key from the URL fragment or a typed passphrase → POST /status → Download button.
// The key never enters a URL the server sees: the fragment is removed from the address bar and history at
// once, lookups send it in a JSON body, and the download is a GET of a one-time ticket's address (the
// key goes in the POST that makes the ticket), which the browser can resume if the connection drops.
import {
  $,
  announce,
  clearError,
  describeError,
  el,
  formatBytes,
  formatTime,
  postJson,
  readLimits,
  showError,
  startCountdown,
} from '/static/common.js';

const limits = readLimits();

const ui = {
  checking: $('checking'),
  lookup: $('lookup'),
  lookupForm: $('lookup-form'),
  input: $('passphrase-input'),
  lookupError: $('lookup-error'),
  lookupButton: $('lookup-button'),
  fileCard: $('file-card'),
  fileHeading: $('file-heading'),
  fileSize: $('file-size'),
  fileType: $('file-type'),
  dropContents: $('drop-contents'),
  contentsLabel: $('contents-label'),
  contentsList: $('contents-list'),
  countdown: $('countdown'),
  countdownLive: $('countdown-live'),
  expiryTime: $('expiry-time'),
  usesLeft: $('uses-left'),
  downloadNote: $('download-note'),
  downloadError: $('download-error'),
  downloadForm: $('download-form'),
  downloadButton: $('download-button'),
  otherButton: $('other-button'),
  stateCard: $('state-card'),
  stateHeading: $('state-heading'),
  stateText: $('state-text'),
  stateRef: $('state-ref'),
  retryButton: $('retry-button'),
  stateOtherButton: $('state-other-button'),
};

let currentKey = null; // held in memory only
let currentStatus = null;
let countdown = null;
let followUps = [];
let lookupSeq = 0;
let clickedDownload = false; // this tab asked for the file at least once

/** Forgiving input: any case; spaces, dashes, dots or underscores between words. */
export function normalisePassphrase(raw) {
  return raw
    .trim()
    .toLowerCase()
    .split(/[\s\-._]+/)
    .filter(Boolean)
    .join('-');
}

/** Catches what cannot be a key before it reaches the server, where it would count as a failed lookup. */
function problemWith(key) {
  if (!key) return 'Type the passphrase first.';
  const words = key.split('-');
  if (words.some((word) => !/^[a-z]+$/.test(word))) return 'A passphrase is made of words only: letters, separated by spaces or dashes.';
  if (words.length < limits.minWords) return `A passphrase has at least ${limits.minWords} words; this one has ${words.length}.`;
  if (words.length > limits.maxWords) return `A passphrase has at most ${limits.maxWords} words; this one has ${words.length}.`;
  return null;
}

function show(section) {
  for (const node of [ui.lookup, ui.fileCard, ui.stateCard]) node.hidden = node !== section;
  ui.checking.textContent = '';
}

function stopTimers() {
  countdown?.stop();
  countdown = null;
  for (const timer of followUps) clearTimeout(timer);
  followUps = [];
}

function forget() {
  stopTimers();
  clickedDownload = false;
  currentKey = null;
  currentStatus = null;
}

function showLookupForm({ focus = true } = {}) {
  forget();
  show(ui.lookup);
  ui.lookupButton.disabled = false;
  if (focus) ui.input.focus();
}

async function lookup(key, { source }) {
  const seq = ++lookupSeq;
  clearError(ui.lookupError);
  const problem = problemWith(key);
  if (problem) {
    if (source === 'link') {
      showLookupForm({ focus: false });
      showError(
        ui.lookupError,
        {
          code: 'VALIDATION_FAILED',
          status: 400,
          message: `This link looks incomplete or damaged. ${problem} Ask the sender for the passphrase and type it here.`,
        },
        limits,
      );
    } else {
      showError(ui.lookupError, { code: 'VALIDATION_FAILED', status: 400, message: problem }, limits);
      ui.input.focus();
    }
    return;
  }

  ui.lookupButton.disabled = true;
  if (source === 'link') {
    show(null);
    ui.checking.textContent = 'Checking the link…';
  }
  const answer = await postJson('/status', { key });
  if (seq !== lookupSeq) return; // a newer lookup started meanwhile
  ui.lookupButton.disabled = false;
  ui.checking.textContent = '';

  if (answer.ok) {
    currentKey = key;
    ui.input.value = '';
    showFile(answer.data);
    return;
  }
  handleLookupError(answer.error, key, source);
}

function handleLookupError(err, key, source) {
  switch (err.code) {
    case 'FILE_NOT_FOUND':
      if (source === 'link') {
        showState(err, {
          title: 'No file matches this link',
          text: 'The link may be mistyped or cut short, or the file was destroyed more than a day ago. Ask the sender to check it.',
        });
      } else {
        show(ui.lookup);
        showError(ui.lookupError, err, limits);
        ui.input.focus();
        ui.input.select();
      }
      return;
    case 'FILE_GONE':
      forget();
      showState(err);
      return;
    case 'VALIDATION_FAILED':
      showLookupForm({ focus: source !== 'link' });
      showError(ui.lookupError, { ...err, message: 'That is not a Cinderbox passphrase. Check the words and try again.' }, limits);
      return;
    case 'IP_BLOCKED':
      showState(err, undefined, { retryKey: null });
      return;
    default:
      // Rate limits, outages and network errors are transient: offer to try the same key again.
      showState(err, undefined, { retryKey: key, source });
  }
}

let retry = null;

function showState(err, words = describeError(err, limits), { retryKey = null, source = 'typed' } = {}) {
  forget();
  show(ui.stateCard);
  ui.stateCard.classList.toggle('is-gone', err.code === 'FILE_GONE');
  ui.stateHeading.textContent = words.title;
  ui.stateText.textContent = words.text;
  ui.stateRef.textContent = err.requestId ? `Reference: ${err.requestId}` : '';
  retry = retryKey ? () => void lookup(retryKey, { source }) : null;
  ui.retryButton.hidden = !retry;
  ui.stateHeading.focus();
}

ui.retryButton.addEventListener('click', () => retry?.());
ui.stateOtherButton.addEventListener('click', () => showLookupForm());
ui.otherButton.addEventListener('click', () => showLookupForm());

function showFile(status) {
  stopTimers();
  clickedDownload = false;
  currentStatus = status;
  show(ui.fileCard);
  clearError(ui.downloadError);
  ui.downloadNote.replaceChildren();
  ui.downloadButton.disabled = false;
  ui.downloadButton.hidden = false;
  ui.fileCard.classList.remove('is-gone');
  ui.fileHeading.textContent = status.filename || 'Unnamed file';
  ui.fileSize.textContent = formatBytes(status.size);
  ui.fileType.textContent = status.mime_type || 'unknown';
  // A drop lists its files (names and sizes) before anything is spent; one click downloads the zip.
  const entries = Array.isArray(status.files) ? status.files : [];
  ui.dropContents.hidden = entries.length === 0;
  ui.contentsLabel.textContent = `${entries.length} files in this zip`;
  ui.contentsList.replaceChildren(
    ...entries.map(({ name, size }) =>
      el('li', {}, el('span', { className: 'entry-name' }, String(name)), el('span', { className: 'entry-size' }, formatBytes(size))),
    ),
  );
  const label = entries.length > 0 ? 'Download all as zip' : 'Download';
  ui.downloadButton.textContent = Number.isFinite(status.size) ? `${label} (${formatBytes(status.size)})` : label;
  setUsesLeft(status.remaining_uses);
  const expiresAt = new Date(status.expires_at);
  ui.expiryTime.textContent = Number.isNaN(expiresAt.getTime()) ? '' : `(at ${formatTime(expiresAt)})`;
  countdown = startCountdown({
    expiresAt,
    clock: ui.countdown,
    live: ui.countdownLive,
    onExpire: () => markDestroyed('The time is up; the file has been destroyed.'),
  });
  ui.fileHeading.focus();
}

function setUsesLeft(n) {
  ui.usesLeft.textContent = Number.isFinite(n) ? String(n) : '–';
}

function markDestroyed(message) {
  stopTimers();
  currentKey = null;
  ui.fileCard.classList.add('is-gone');
  ui.downloadButton.disabled = true;
  ui.downloadButton.hidden = true;
  ui.countdown.textContent = '–';
  ui.expiryTime.textContent = '';
  setUsesLeft(0);
  ui.downloadNote.replaceChildren(el('p', {}, message));
}

ui.lookupForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void lookup(normalisePassphrase(ui.input.value), { source: 'typed' });
});

ui.downloadForm.addEventListener('submit', (event) => {
  event.preventDefault();
  void startDownload();
});

async function startDownload() {
  if (!currentKey) return;
  const key = currentKey;
  clearError(ui.downloadError);
  ui.downloadButton.disabled = true;
  // Status spends nothing; checking first keeps an error answer from replacing this page.
  const check = await postJson('/status', { key });
  if (key !== currentKey) return;
  if (!check.ok) {
    ui.downloadButton.disabled = false;
    if (check.error.code === 'FILE_GONE') showState(check.error);
    else showError(ui.downloadError, check.error, limits);
    return;
  }
  const usesBefore = check.data.remaining_uses;
  // A ticket first (the key travels in a POST body), then a plain GET of the ticket's address: a GET
  // the browser's download manager can resume on its own if the connection drops (docs/DECISIONS.md).
  const ticket = await postJson('/download/ticket', { key });
  if (key !== currentKey) return;
  if (!ticket.ok) {
    ui.downloadButton.disabled = false;
    if (ticket.error.code === 'FILE_GONE') showState(ticket.error);
    else showError(ui.downloadError, ticket.error, limits);
    return;
  }
  clickedDownload = true;
  const link = el('a', { href: ticket.data.download_url, download: '', hidden: true });
  document.body.append(link);
  link.click();
  link.remove();
  ui.downloadNote.replaceChildren(el('p', {}, 'Your download has started. Your browser saves the file under its original name.'));
  announce('Download started.');
  followUps = [1500, 4000, 10000].map((delay) => setTimeout(() => void refreshStatus(key, { usesBefore, afterClick: true }), delay));
  // Re-enable after a moment so a double click does not spend two downloads.
  followUps.push(
    setTimeout(() => {
      if (currentKey === key) ui.downloadButton.disabled = false;
    }, 2500),
  );
}

async function refreshStatus(key, { usesBefore, afterClick }) {
  if (key !== currentKey) return;
  const answer = await postJson('/status', { key });
  if (key !== currentKey) return;
  if (answer.ok) {
    currentStatus = answer.data;
    setUsesLeft(answer.data.remaining_uses);
    if (afterClick && answer.data.remaining_uses < usesBefore) {
      const n = answer.data.remaining_uses;
      ui.downloadNote.replaceChildren(
        el('p', {}, `Downloaded. ${n === 1 ? 'One download is' : `${n} downloads are`} left before the file is destroyed.`),
      );
    }
    return;
  }
  if (answer.error.code !== 'FILE_GONE') return; // a passing hiccup; the next refresh will tell
  const reason = answer.error.reason ?? 'burned';
  let message;
  if (reason === 'burned') {
    message = afterClick
      ? 'This was the last download; the file is now destroyed.'
      : 'The last download has been used; the file is now destroyed.';
  } else {
    message = describeError(answer.error, limits).text;
  }
  markDestroyed(message);
  announce(message);
}

// Coming back to the tab (for example from the downloads list) is a good moment to refresh.
window.addEventListener('focus', () => {
  if (currentKey && currentStatus && !ui.fileCard.hidden) {
    void refreshStatus(currentKey, { usesBefore: currentStatus.remaining_uses, afterClick: clickedDownload });
  }
});

function takeKeyFromFragment() {
  if (!location.hash || location.hash.length < 2) return null;
  let raw = location.hash.slice(1);
  try {
    raw = decodeURIComponent(raw);
  } catch {
    // keep the raw text; validation explains what is wrong with it
  }
  // A fragment naming an element of this page (the skip link's #main) is in-page navigation, not a
  // key: left alone, so the browser moves focus there and nothing on the page changes.
  if (document.getElementById(raw)) return null;
  // Out of the address bar and the history entry before anything else happens.
  history.replaceState(null, '', '/d');
  return normalisePassphrase(raw);
}

function start() {
  const key = takeKeyFromFragment();
  if (key === null) {
    show(ui.lookup);
    return;
  }
  void lookup(key, { source: 'link' });
}

// Pasting another share link into the address bar of this tab changes only the fragment. A fragment
// that cannot be a key never replaces a file already found: that would lose it for nothing.
window.addEventListener('hashchange', () => {
  const key = takeKeyFromFragment();
  if (!key || (currentKey && problemWith(key))) return;
  void lookup(key, { source: 'link' });
});

start();
