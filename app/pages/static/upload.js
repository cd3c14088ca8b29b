// Upload page (GET /): pick or drop files or a folder, choose expiry and uses, upload with progress, show the
// result card. Several files (or a folder) go in one request and the server makes them one zip (a drop).
import qrcode from '/static/qrcode.mjs';
import {
  $,
  announce,
  attachCopyButton,
  clearError,
  el,
  formatBytes,
  formatDuration,
  formatMinutes,
  formatTime,
  parseApiError,
  postJson,
  readLimits,
  showError,
  startCountdown,
} from '/static/common.js';
import { WORDING } from '/static/wording.js';

const limits = readLimits();

const ui = {
  form: $('upload-form'),
  section: $('upload-section'),
  dropzone: $('dropzone'),
  dropzoneTitle: $('dropzone-title'),
  input: $('file'),
  folderInput: $('folder'),
  maxSize: $('max-size'),
  maxFiles: $('max-files'),
  chosen: $('file-chosen'),
  chosenName: $('file-name'),
  chosenSize: $('file-size'),
  chosenBox: $('chosen-box'),
  chosenList: $('chosen-list'),
  expiry: $('expiry'),
  uses: $('uses'),
  error: $('upload-error'),
  uploadButton: $('upload-button'),
  progressPanel: $('progress-panel'),
  progressLabel: $('progress-label'),
  progress: $('progress'),
  progressBytes: $('progress-bytes'),
  progressSpeed: $('progress-speed'),
  progressEta: $('progress-eta'),
  progressLive: $('progress-live'),
  cancelButton: $('cancel-button'),
  result: $('result'),
  resultHeading: $('result-heading'),
  resultFilename: $('result-filename'),
  resultSize: $('result-size'),
  resultFiles: $('result-files'),
  resultFilesLabel: $('result-files-label'),
  resultFilesList: $('result-files-list'),
  shareLink: $('share-link'),
  passphrase: $('passphrase'),
  copyLink: $('copy-link'),
  copyPassphrase: $('copy-passphrase'),
  receiveAddress: $('receive-address'),
  qr: $('qr'),
  countdown: $('countdown'),
  countdownLive: $('countdown-live'),
  expiryTime: $('expiry-time'),
  usesLeft: $('uses-left'),
  receiptEvents: $('receipt-events'),
  sha256: $('sha256'),
  state: $('result-state'),
  explanation: $('explanation'),
  deleteError: $('delete-error'),
  deleteButton: $('delete-button'),
  anotherButton: $('another-button'),
};

/** What will be sent: each file with the name it goes under (a folder's files keep their relative path). */
let selection = [];
let activeUpload = null;
let current = null; // the upload's 201 answer while the result card is shown
let countdown = null;
let statusTimer = null;
let receiptStopped = false; // the receipt will not change again, or asking again would count against the sender
/** How often the result card asks for the delivery receipt (each ask costs the server one key derivation). */
const RECEIPT_EVERY_MS = 15_000;
/**
 * Receipt answers that asking again cannot change. 404 above all: once the receipt is gone (the tombstone's
 * TOMBSTONE_HOURS after the end) every ask is a failed lookup, and DOWNLOAD_FAIL_LIMIT of them would block
 * the sender's own network. 5xx, 429 (a limit that passes) and network errors pass, and the next refresh tells.
 */
const RECEIPT_STOP_STATUSES = new Set([400, 403, 404, 410]);

// ---------- form setup ----------

function expiryChoices() {
  const max = limits.maxExpiryMinutes;
  const preset = [1, 5, 10, 15, 30, 60, 120, 180, 360, 720, 1440, 2880, 4320, 10080];
  const choices = new Set(preset.filter((m) => m <= max));
  choices.add(Math.min(limits.defaultExpiryMinutes, max));
  choices.add(max);
  return [...choices].sort((a, b) => a - b);
}

function usesChoices() {
  const max = Math.floor(limits.maxUses);
  const choices = new Set();
  for (let n = 1; n <= Math.min(max, 10); n += 1) choices.add(n);
  for (const n of [15, 20, 25, 50, 100, 250, 500, 1000]) if (n <= max) choices.add(n);
  choices.add(max);
  choices.add(Math.min(limits.defaultUses, max));
  return [...choices].sort((a, b) => a - b);
}

function fillSelects() {
  const defaultExpiry = Math.min(limits.defaultExpiryMinutes, limits.maxExpiryMinutes);
  for (const minutes of expiryChoices()) {
    ui.expiry.append(el('option', { value: String(minutes), defaultSelected: minutes === defaultExpiry }, formatMinutes(minutes)));
  }
  const defaultUses = Math.min(limits.defaultUses, limits.maxUses);
  for (const n of usesChoices()) {
    ui.uses.append(el('option', { value: String(n), defaultSelected: n === defaultUses }, n === 1 ? '1 download' : `${n} downloads`));
  }
  ui.maxSize.textContent = formatBytes(limits.maxFileSize);
  ui.maxFiles.textContent = String(limits.maxFilesPerUpload);
}

const totalSize = (items) => items.reduce((sum, item) => sum + item.file.size, 0);

/** Names and sizes as a list; long lists scroll inside their box. */
function fillFileList(list, entries) {
  list.replaceChildren(
    ...entries.map(({ name, size }) =>
      el('li', {}, el('span', { className: 'entry-name' }, name), el('span', { className: 'entry-size' }, formatBytes(size))),
    ),
  );
}

function choose(items) {
  clearError(ui.error);
  selection = items;
  if (selection.length === 0) {
    ui.chosen.hidden = true;
    ui.dropzone.classList.remove('has-file');
    ui.dropzoneTitle.textContent = 'Choose files';
    return;
  }
  ui.dropzoneTitle.textContent = 'Choose different files';
  ui.chosenName.textContent = selection.length === 1 ? selection[0].path || 'Unnamed file' : `${selection.length} files`;
  ui.chosenSize.textContent = formatBytes(totalSize(selection));
  ui.chosenBox.hidden = selection.length === 1;
  fillFileList(ui.chosenList, selection.length === 1 ? [] : selection.map((item) => ({ name: item.path, size: item.file.size })));
  ui.chosen.hidden = false;
  ui.dropzone.classList.add('has-file');
  selectionProblem(true);
}

/** Says what is wrong with the selection (too many files, too large in all); returns whether anything is. */
function selectionProblem(show) {
  let err = null;
  if (selection.length > limits.maxFilesPerUpload) {
    err = {
      code: 'VALIDATION_FAILED',
      status: 400,
      message: `At most ${limits.maxFilesPerUpload} files can be sent at once; ${selection.length} are selected.`,
    };
  } else if (totalSize(selection) > limits.maxFileSize) {
    err = { code: 'FILE_TOO_LARGE', status: 413 };
  }
  if (err && show) showError(ui.error, err, limits);
  return err !== null;
}

function announceSelection() {
  const what = selection.length === 1 ? selection[0].path : `${selection.length} files`;
  announce(`Selected ${what}, ${formatBytes(totalSize(selection))}.`);
}

ui.input.addEventListener('change', () => {
  ui.folderInput.value = '';
  choose([...(ui.input.files ?? [])].map((file) => ({ file, path: file.name })));
});

// A folder picker gives every file with its path below the chosen folder's parent (photos/2026/a.jpg).
ui.folderInput.addEventListener('change', () => {
  ui.input.value = '';
  choose([...(ui.folderInput.files ?? [])].map((file) => ({ file, path: file.webkitRelativePath || file.name })));
});

/** Every file under a dropped entry (a file, or a folder walked depth first), with its path inside the drop. */
async function filesOf(entry) {
  if (entry.isFile) {
    const file = await new Promise((resolve, reject) => entry.file(resolve, reject));
    return [{ file, path: entry.fullPath.replace(/^\/+/, '') || file.name }];
  }
  if (!entry.isDirectory) return [];
  const reader = entry.createReader();
  const children = [];
  // readEntries answers in batches (100 at a time in Chromium) until it answers an empty one.
  for (;;) {
    const batch = await new Promise((resolve, reject) => reader.readEntries(resolve, reject));
    if (batch.length === 0) break;
    children.push(...batch);
  }
  const nested = [];
  for (const child of children) nested.push(...(await filesOf(child)));
  return nested;
}

/** A drop's files: folders through FileSystemDirectoryEntry, plain files as they are. */
async function droppedItems(dataTransfer) {
  // Entries must be taken while the drop event runs: the item list is emptied right after it.
  const taken = [...(dataTransfer.items ?? [])]
    .filter((item) => item.kind === 'file')
    .map((item) => ({ entry: item.webkitGetAsEntry?.() ?? null, file: item.getAsFile() }));
  const items = [];
  for (const { entry, file } of taken) {
    if (entry) items.push(...(await filesOf(entry)));
    else if (file) items.push({ file, path: file.name });
  }
  if (items.length === 0) return [...(dataTransfer.files ?? [])].map((file) => ({ file, path: file.name }));
  return items;
}

// Dropping anywhere else must not make the browser navigate to the file.
window.addEventListener('dragover', (event) => event.preventDefault());
window.addEventListener('drop', (event) => event.preventDefault());

let dragDepth = 0;
ui.dropzone.addEventListener('dragenter', (event) => {
  event.preventDefault();
  dragDepth += 1;
  ui.dropzone.classList.add('is-dragging');
});
ui.dropzone.addEventListener('dragover', (event) => {
  event.preventDefault();
  if (event.dataTransfer) event.dataTransfer.dropEffect = 'copy';
});
ui.dropzone.addEventListener('dragleave', () => {
  dragDepth = Math.max(0, dragDepth - 1);
  if (dragDepth === 0) ui.dropzone.classList.remove('is-dragging');
});
ui.dropzone.addEventListener('drop', (event) => {
  event.preventDefault();
  dragDepth = 0;
  ui.dropzone.classList.remove('is-dragging');
  if (!event.dataTransfer) return;
  droppedItems(event.dataTransfer).then(
    (items) => {
      if (items.length === 0) return;
      ui.input.value = '';
      ui.folderInput.value = '';
      choose(items);
      announceSelection();
    },
    () =>
      showError(
        ui.error,
        { code: 'VALIDATION_FAILED', status: 400, message: 'The dropped folder could not be read. Try the folder button instead.' },
        limits,
      ),
  );
});

// ---------- upload ----------

ui.form.addEventListener('submit', (event) => {
  event.preventDefault();
  clearError(ui.error);
  if (selection.length === 0) {
    showError(ui.error, { code: 'VALIDATION_FAILED', status: 400, message: 'Choose a file first.' }, limits);
    ui.input.focus();
    return;
  }
  if (selectionProblem(true)) return;
  startUpload(selection);
});

ui.cancelButton.addEventListener('click', () => activeUpload?.abort());

function warnBeforeLeaving(event) {
  event.preventDefault();
}

function startUpload(items) {
  const body = new FormData();
  // Fields before the files, so the server knows the options before the bytes stream in.
  body.append('expiry', ui.expiry.value);
  body.append('uses', ui.uses.value);
  // The third argument is the part's filename: a folder's files keep their relative path there.
  for (const { file, path } of items) body.append('file', file, path);

  const xhr = new XMLHttpRequest();
  activeUpload = xhr;
  const total = totalSize(items);
  // One bar for the whole request: several files are one drop, and one body on the wire.
  const meter = createMeter(total);
  const what = items.length === 1 ? items[0].path : `${items.length} files`;

  ui.form.hidden = true;
  ui.progressPanel.hidden = false;
  ui.progressLabel.textContent = `Uploading ${what}`;
  ui.progress.max = Math.max(total, 1);
  ui.progress.value = 0;
  meter.render(0);
  ui.progressLive.textContent = `Uploading ${what}.`;
  window.addEventListener('beforeunload', warnBeforeLeaving);

  xhr.open('POST', '/upload');
  xhr.setRequestHeader('Accept', 'application/json');
  xhr.upload.addEventListener('progress', (event) => meter.update(event.loaded));
  xhr.upload.addEventListener('load', () => meter.finish());
  xhr.addEventListener('load', () => {
    let data = null;
    try {
      data = JSON.parse(xhr.responseText);
    } catch {
      data = null;
    }
    if (xhr.status === 201 && data && typeof data.key === 'string') {
      endUpload();
      showResult(data);
    } else {
      endUpload();
      failUpload(parseApiError(xhr.status, data, xhr.getResponseHeader('Retry-After')));
    }
  });
  xhr.addEventListener('error', () => {
    endUpload();
    failUpload(parseApiError(0, null));
  });
  xhr.addEventListener('abort', () => {
    endUpload();
    backToForm();
    announce('Upload cancelled.');
    ui.uploadButton.focus();
  });
  xhr.send(body);
}

function endUpload() {
  activeUpload = null;
  window.removeEventListener('beforeunload', warnBeforeLeaving);
}

function backToForm() {
  ui.progressPanel.hidden = true;
  ui.form.hidden = false;
}

function failUpload(err) {
  backToForm();
  showError(ui.error, err, limits);
  ui.uploadButton.focus();
}

/**
 * Bytes, speed and time left. The bar and numbers repaint at most five times a second; screen readers
 * hear only quarter-way milestones, so the live region does not chatter.
 */
function createMeter(total) {
  const samples = [];
  let lastPaint = 0;
  let nextMilestone = 25;
  const speedOf = () => {
    if (samples.length < 2) return 0;
    const first = samples[0];
    const last = samples[samples.length - 1];
    const seconds = (last.t - first.t) / 1000;
    return seconds > 0 ? (last.loaded - first.loaded) / seconds : 0;
  };
  const render = (loaded) => {
    ui.progress.value = loaded;
    ui.progressBytes.textContent = `${formatBytes(loaded)} of ${formatBytes(total)}`;
    const speed = speedOf();
    ui.progressSpeed.textContent = speed > 0 ? `${formatBytes(speed)}/s` : '';
    ui.progressEta.textContent = speed > 0 && loaded < total ? `about ${formatDuration((total - loaded) / speed)} left` : '';
  };
  return {
    render,
    update(loaded) {
      const now = performance.now();
      samples.push({ t: now, loaded });
      // A three-second window: steady enough to read, quick to follow a changing network.
      while (samples.length > 2 && now - samples[0].t > 3000) samples.shift();
      const percent = total > 0 ? Math.floor((loaded / total) * 100) : 100;
      if (percent >= nextMilestone && percent < 100) {
        ui.progressLive.textContent = `${nextMilestone} percent uploaded.`;
        nextMilestone = (Math.floor(percent / 25) + 1) * 25;
      }
      if (now - lastPaint >= 200) {
        lastPaint = now;
        render(loaded);
      }
    },
    finish() {
      render(total);
      ui.progressEta.textContent = 'finishing…';
      ui.progressLive.textContent = 'Upload complete. Finishing encryption.';
    },
  };
}

// ---------- result card ----------

function showResult(data) {
  current = data;
  ui.section.hidden = true;
  ui.result.hidden = false;
  ui.result.classList.remove('is-gone');
  ui.resultHeading.textContent = 'Your file is ready to share';
  ui.state.replaceChildren();
  clearError(ui.deleteError);
  ui.deleteButton.hidden = false;
  ui.deleteButton.disabled = false;
  ui.copyLink.hidden = false;
  ui.copyPassphrase.hidden = false;

  ui.resultFilename.textContent = data.filename ?? '';
  ui.resultSize.textContent = Number.isFinite(data.size) ? formatBytes(data.size) : '';
  const entries = Array.isArray(data.files) ? data.files : [];
  ui.resultFiles.hidden = entries.length === 0;
  ui.resultFilesLabel.textContent = `${entries.length} files, sent as one zip`;
  fillFileList(ui.resultFilesList, entries);
  ui.shareLink.textContent = data.share_url;
  ui.passphrase.textContent = data.key;
  ui.receiveAddress.textContent = new URL('/d', new URL(data.share_url, location.href)).href;
  ui.sha256.textContent = data.sha256 ?? '';
  renderQr(ui.qr, data.share_url);

  const expiresAt = new Date(data.expiry);
  ui.expiryTime.textContent = `(at ${formatTime(expiresAt)})`;
  setUsesLeft(data.uses);
  ui.receiptEvents.replaceChildren(el('li', {}, 'Nobody has opened it yet.'));
  ui.explanation.textContent =
    `The file is stored encrypted with a key made from the passphrase; the server cannot open it without it. ` +
    `After ${data.uses === 1 ? 'one download' : `${data.uses} downloads`} or at ${formatTime(expiresAt)}, whichever comes first, ` +
    `it is destroyed. Anyone with the link or the passphrase can download it. ` +
    `The link and passphrase are shown only once: copy them now.`;

  countdown?.stop();
  countdown = startCountdown({
    expiresAt,
    clock: ui.countdown,
    live: ui.countdownLive,
    onExpire: () => markGone('expired'),
  });
  receiptStopped = false;
  scheduleStatusRefresh();

  ui.resultHeading.focus();
  announce('Upload complete. Your share link and passphrase are ready.');
}

function setUsesLeft(n) {
  ui.usesLeft.textContent = Number.isFinite(n) ? String(n) : '–';
}

/** The delivery receipt as sentences: times only, in the order things happened. */
function receiptLines(receipt) {
  const at = (iso) => formatTime(new Date(iso));
  const lines = [];
  if (receipt.previewed_at) lines.push(`Previewed at ${at(receipt.previewed_at)}.`);
  receipt.downloads.forEach((download, i) => {
    const which = receipt.uses_total > 1 ? `Download ${i + 1}` : 'Downloaded';
    lines.push(
      download.completed_at
        ? `${which}: started at ${at(download.started_at)}, completed at ${at(download.completed_at)}.`
        : `${which}: started at ${at(download.started_at)}, not completed (yet).`,
    );
  });
  if (receipt.resumes > 0)
    lines.push(
      `Resumed after a dropped connection ${receipt.resumes === 1 ? 'once' : `${receipt.resumes} times`}, last at ${at(receipt.last_resumed_at)}.`,
    );
  if (receipt.refused_after_end > 0)
    lines.push(
      `Asked for after it was gone: ${receipt.refused_after_end === 1 ? 'once' : `${receipt.refused_after_end} times`} (refused).`,
    );
  if (lines.length === 0) lines.push('Nobody has opened it yet.');
  return lines;
}

/**
 * The sender's live view: the delivery receipt (POST /files/receipt, with the delete token this page
 * holds). It says what happened, and whether the file is still there.
 */
async function refreshReceipt() {
  if (!current || receiptStopped || document.visibilityState === 'hidden') return;
  const { key, delete_token: token } = current;
  const answer = await postJson('/files/receipt', { key }, { 'X-Delete-Token': token });
  if (!current || current.key !== key || receiptStopped) return;
  if (!answer.ok) {
    if (RECEIPT_STOP_STATUSES.has(answer.error.status)) stopReceipts();
    return; // otherwise a passing hiccup: the next refresh tells
  }
  const receipt = answer.data;
  ui.receiptEvents.replaceChildren(...receiptLines(receipt).map((line) => el('li', {}, line)));
  if (receipt.state === 'active') {
    setUsesLeft(receipt.uses_left);
    return;
  }
  // Deleted: nothing more can happen to it. A burned or expired file's receipt may still change (the
  // last download completing, requests refused after the end): asked again slowly (markGone) until the
  // receipt itself is gone (a 404, above).
  if (receipt.state === 'deleted') stopReceipts();
  markGone(receipt.state);
}

/** No more receipt requests from this card: no timer, and no refresh when the tab becomes visible. */
function stopReceipts() {
  receiptStopped = true;
  clearInterval(statusTimer);
  statusTimer = null;
}

function scheduleStatusRefresh() {
  clearInterval(statusTimer);
  statusTimer = setInterval(() => void refreshReceipt(), RECEIPT_EVERY_MS);
}

document.addEventListener('visibilitychange', () => {
  if (document.visibilityState === 'visible') void refreshReceipt();
});

function markGone(reason) {
  if (!current || ui.result.classList.contains('is-gone')) return;
  countdown?.stop();
  // Gone by this page's clock or its delete: asked again, slowly, until a receipt says the end is final.
  if (!receiptStopped) {
    clearInterval(statusTimer);
    statusTimer = setInterval(() => void refreshReceipt(), 4 * RECEIPT_EVERY_MS);
  }
  ui.result.classList.add('is-gone');
  ui.resultHeading.textContent = reason === 'deleted' ? 'File deleted' : 'File destroyed';
  ui.countdown.textContent = '–';
  ui.expiryTime.textContent = '';
  setUsesLeft(0);
  ui.deleteButton.hidden = true;
  ui.copyLink.hidden = true;
  ui.copyPassphrase.hidden = true;
  ui.state.replaceChildren(el('p', {}, WORDING.goneForSender[reason] ?? 'The file no longer exists.'));
}

attachCopyButton(ui.copyLink, () => current?.share_url ?? '', ui.shareLink);
attachCopyButton(ui.copyPassphrase, () => current?.key ?? '', ui.passphrase);

ui.deleteButton.addEventListener('click', async () => {
  if (!current) return;
  clearError(ui.deleteError);
  ui.deleteButton.disabled = true;
  let response;
  try {
    // The key travels in a header, never in a URL a proxy would log.
    response = await fetch('/files', {
      method: 'DELETE',
      headers: { 'X-Key': current.key, 'X-Delete-Token': current.delete_token, Accept: 'application/json' },
      credentials: 'omit',
      cache: 'no-store',
      referrerPolicy: 'no-referrer',
    });
  } catch {
    ui.deleteButton.disabled = false;
    showError(ui.deleteError, parseApiError(0, null), limits);
    return;
  }
  if (response.status === 204) {
    markGone('deleted');
    announce('Deleted.');
    ui.anotherButton.focus();
    return;
  }
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const err = parseApiError(response.status, body, response.headers.get('Retry-After'));
  if (err.code === 'FILE_GONE' || err.code === 'FILE_NOT_FOUND') {
    markGone(err.reason ?? 'burned');
    ui.anotherButton.focus();
    return;
  }
  ui.deleteButton.disabled = false;
  showError(ui.deleteError, err, limits);
});

ui.anotherButton.addEventListener('click', () => {
  // Drop the secrets from the page before going back to the form.
  current = null;
  countdown?.stop();
  stopReceipts();
  for (const node of [ui.shareLink, ui.passphrase, ui.sha256, ui.qr, ui.resultFilename, ui.explanation, ui.state, ui.resultFilesList]) {
    node.replaceChildren();
  }
  ui.result.hidden = true;
  ui.section.hidden = false;
  ui.form.reset();
  ui.input.value = '';
  ui.folderInput.value = '';
  choose([]);
  backToForm();
  ui.input.focus();
});

// ---------- QR code as inline SVG, built with DOM APIs ----------

const SVG_NS = 'http://www.w3.org/2000/svg';

function renderQr(container, text) {
  const code = qrcode(0, 'M');
  code.addData(text);
  code.make();
  const count = code.getModuleCount();
  const quiet = 4;
  const size = count + quiet * 2;
  let d = '';
  for (let row = 0; row < count; row += 1) {
    for (let col = 0; col < count; col += 1) {
      if (code.isDark(row, col)) d += `M${col + quiet} ${row + quiet}h1v1h-1z`;
    }
  }
  const svg = document.createElementNS(SVG_NS, 'svg');
  svg.setAttribute('viewBox', `0 0 ${size} ${size}`);
  svg.setAttribute('class', 'qr-svg');
  svg.setAttribute('role', 'img');
  svg.setAttribute('shape-rendering', 'crispEdges');
  const title = document.createElementNS(SVG_NS, 'title');
  title.textContent = 'QR code of the share link';
  const background = document.createElementNS(SVG_NS, 'rect');
  background.setAttribute('width', String(size));
  background.setAttribute('height', String(size));
  background.setAttribute('fill', '#ffffff');
  const modules = document.createElementNS(SVG_NS, 'path');
  modules.setAttribute('d', d);
  modules.setAttribute('fill', '#000000');
  svg.append(title, background, modules);
  container.replaceChildren(svg);
}

fillSelects();
// The form is hidden until this script runs (index.html): without it, a submit would send the file's
// name in a GET URL, and the no-JS note points to curl instead.
ui.section.hidden = false;
