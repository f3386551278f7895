// The Gatehouse console: an account's API keys over the HTTP+JSON API of the
// origin that served this file, and nothing else.
//
// The session (access and refresh token) lives in this module's memory only:
// not in web storage or a cookie, so a reload signs out and
// a script injected elsewhere cannot read it from storage. Untrusted text
// (key names, reasons, messages) is only ever set as text, never as markup.

const $ = (id) => document.getElementById(id);

// Never a blank page: whatever fails from here on is said in the banner —
// including anything the Content-Security-Policy refuses.
window.addEventListener('error', (event) => banner(`Something went wrong in the console: ${event.message}`));
window.addEventListener('unhandledrejection', (event) => {
  if (!(event.reason instanceof SessionOver)) {
    banner(`Something went wrong in the console: ${event.reason && event.reason.message}`);
  }
});
document.addEventListener('securitypolicyviolation', (event) =>
  banner(`The browser refused ${event.blockedURI || 'something'} (${event.violatedDirective}).`),
);

/** An error answered by the API (`{code, message, statusCode, reason?}`), or a
 *  network failure (status 0). */
class ApiError extends Error {
  constructor(status, body) {
    super(
      (body && typeof body.message === 'string' && body.message) ||
        (status === 0
          ? 'Gatehouse could not be reached. Check the connection and try again.'
          : `The server answered ${status}.`),
    );
    this.status = status;
    this.code = body && body.code;
    this.reason = body && body.reason;
  }
}

/** Thrown once the session is over; the sign-in form already says why. */
class SessionOver extends Error {}

/** The signed-in session, or null: `{access, refresh, account, user, timer,
 *  refreshing}`. */
let session = null;

/** Longest an API call may take before the page says so. */
const CALL_TIMEOUT_MS = 30000;

// ---------------------------------------------------------------- the API

async function call(method, path, body, { auth = true, retry = true } = {}) {
  const headers = { Accept: 'application/json' };
  if (body !== undefined) headers['Content-Type'] = 'application/json';
  const current = session;
  const sent = current && current.access;
  if (auth) {
    if (!current) throw new SessionOver();
    headers.Authorization = `Bearer ${sent}`;
  }
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: 'omit',
      cache: 'no-store',
      signal: AbortSignal.timeout(CALL_TIMEOUT_MS),
    });
  } catch {
    throw new ApiError(0, null);
  }
  // Signed out (or in as someone else) meanwhile: the answer is not shown.
  if (auth && current !== session) throw new SessionOver();
  if (response.status === 204) return null;
  const data = await response
    .text()
    .then((text) => (text ? JSON.parse(text) : null))
    .catch(() => null);
  if (response.ok) return data;
  if (auth && retry && response.status === 401) {
    // The access token ran out before its scheduled refresh (or was renewed
    // while this call was under way): renew it once, then ask again.
    if (current.access === sent && !(await refresh(current))) {
      if (current !== session) throw new SessionOver();
      throw new ApiError(0, { message: 'The session could not be renewed just now. Try again.' });
    }
    return call(method, path, body, { auth, retry: false });
  }
  throw new ApiError(response.status, data);
}

const account = () => encodeURIComponent(session.account.id);
const keysPath = () => `/api/v1/accounts/${account()}/keys`;
const keyPath = (id) => `${keysPath()}/${encodeURIComponent(id)}`;

/** Renews the session's tokens: true when renewed, false when it could not be
 *  (the session is over, or the issuer is unreachable for now). One renewal
 *  at a time per session: two at once would spend the same refresh token
 *  twice, which the issuer treats as theft and ends the session. */
function refresh(current = session) {
  if (!current || current !== session) return Promise.resolve(false);
  if (!current.refreshing) {
    current.refreshing = renew(current).finally(() => {
      current.refreshing = null;
    });
  }
  return current.refreshing;
}

async function renew(current) {
  try {
    const tokens = await call(
      'POST',
      '/api/token/refresh',
      { refresh_token: current.refresh },
      { auth: false },
    );
    if (current !== session) return false;
    current.access = tokens.access_token;
    current.refresh = tokens.refresh_token;
    schedule(current, tokens.expires_in);
    return true;
  } catch (error) {
    if (current !== session) return false;
    if (error.status === 400 || error.status === 401 || error.status === 403) {
      endSession(sessionEndedMessage(error));
      return false;
    }
    // The issuer is unreachable or busy: keep the session and try again.
    // (Had the lost answer renewed the tokens, the next attempt looks like
    // reuse and the issuer ends the session: the page then says so.)
    clearTimeout(current.timer);
    current.timer = setTimeout(() => refresh(current), 5000);
    return false;
  }
}

function sessionEndedMessage(error) {
  const expired = ['SESSION_EXPIRED', 'TOKEN_EXPIRED', 'REFRESH_TOKEN_EXPIRED'];
  if (expired.includes(error.reason)) return 'Your session has expired. Sign in again.';
  return `Your session has ended (${error.message}). Sign in again.`;
}

/** Refreshes ahead of expiry: at 80 % of the lifetime, at most a minute early. */
function schedule(current, expiresIn) {
  clearTimeout(current.timer);
  const seconds = Math.max(1, Math.min(expiresIn - 60, expiresIn * 0.8));
  current.timer = setTimeout(() => refresh(current), seconds * 1000);
}

// ---------------------------------------------------------------- helpers

/** An element with attributes and children (strings become text nodes). */
function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === false || value === null || value === undefined) continue;
    if (typeof value === 'function') element.addEventListener(name.replace(/^on/, ''), value);
    else element.setAttribute(name, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child !== null && child !== undefined && child !== false) {
      element.append(child instanceof Node ? child : String(child));
    }
  }
  return element;
}

/** A time in the reader's locale; with seconds where they matter (a grace
 *  cut-off), to the minute in the list. */
const when = (iso, { seconds = true } = {}) =>
  iso
    ? h(
        'time',
        { datetime: iso, title: iso },
        new Date(iso).toLocaleString(undefined, {
          dateStyle: 'medium',
          timeStyle: seconds ? 'medium' : 'short',
        }),
      )
    : null;

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function banner(message) {
  $('banner-text').textContent = message;
  $('banner').hidden = false;
}

function clearBanner() {
  $('banner').hidden = true;
  $('banner-text').textContent = '';
}

function formError(id, message) {
  const element = $(id);
  element.textContent = message || '';
  element.hidden = !message;
}

/** Shows what went wrong where the user is looking: in the open dialog's
 *  error line, or the banner. A finished session already said so. */
function report(error, inDialog) {
  if (error instanceof SessionOver) return;
  const message = error instanceof ApiError ? error.message : `Something went wrong: ${error}`;
  if (inDialog) formError(inDialog, message);
  else banner(message);
}

/** Runs `work` with `button` disabled, so a slow call is not sent twice. */
async function busy(button, work) {
  button.disabled = true;
  try {
    return await work();
  } finally {
    button.disabled = false;
  }
}

// ---------------------------------------------------------------- session

$('sign-in-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const username = $('username').value.trim();
  const password = $('password').value;
  if (!username || !password) {
    formError('sign-in-error', 'Enter your username and password.');
    return;
  }
  formError('sign-in-error', '');
  busy($('sign-in-submit'), async () => {
    try {
      const answer = await call('POST', '/api/auth/login', { username, password }, { auth: false });
      $('password').value = '';
      session = {
        access: answer.access_token,
        refresh: answer.refresh_token,
        account: answer.account,
        user: answer.user,
        timer: null,
      };
      schedule(session, answer.expires_in);
      enter();
    } catch (error) {
      formError('sign-in-error', error.message);
      $('password').select();
    }
  });
});

$('sign-out').addEventListener('click', async () => {
  const current = session;
  if (!current) return;
  endSession('You have signed out.');
  // Ends the session on the server too; the tokens are forgotten either way.
  await fetch('/api/auth/logout', {
    method: 'POST',
    headers: { 'Content-Type': 'application/json' },
    body: JSON.stringify({ refresh_token: current.refresh }),
    credentials: 'omit',
  }).catch(() => {});
});

function enter() {
  clearBanner();
  $('who').textContent = `${session.user.username} · ${session.account.name}`;
  $('who').hidden = false;
  $('sign-out').hidden = false;
  $('sign-in-view').hidden = true;
  $('keys-view').hidden = false;
  loadKeys();
  $('create-key').focus();
}

/** Forgets the session and everything shown for it. */
function endSession(message) {
  if (session) clearTimeout(session.timer);
  session = null;
  stopActivity();
  clearTimeout(stateTimer);
  for (const dialog of document.querySelectorAll('dialog')) if (dialog.open) dialog.close();
  $('secret').textContent = '';
  $('key-rows').replaceChildren();
  $('keys-view').hidden = true;
  $('who').hidden = true;
  $('sign-out').hidden = true;
  $('sign-in-view').hidden = false;
  formError('sign-in-error', message);
  $('username').focus();
}

// ---------------------------------------------------------------- keys

/** Reloads the list when the earliest grace period or expiry falls due. */
let stateTimer = null;
let nextPage = '';
/** Every key shown, by id (all pages loaded so far). */
let shown = new Map();
/** Bumped by every reload: an older answer arriving late is dropped. */
let generation = 0;

async function loadKeys({ more = false } = {}) {
  const mine = ++generation;
  // A redraw replaces the row buttons: the focus goes back to the same one.
  const focused = document.activeElement;
  const focusRow = focused && focused.closest && focused.closest('tr[data-key-id]');
  const focusKey = focusRow ? focusRow.dataset.keyId : null;
  const focusAction = focusKey ? focused.className : null;
  try {
    const query = more && nextPage ? `?page_token=${encodeURIComponent(nextPage)}` : '';
    const page = await call('GET', `${keysPath()}${query}`);
    if (mine !== generation) return;
    if (!more) {
      $('key-rows').replaceChildren();
      shown = new Map();
    }
    for (const key of page.keys) shown.set(key.key_id, key);
    $('key-rows').append(...page.keys.map(row));
    nextPage = page.next_page_token || '';
    $('more-keys').hidden = !nextPage;
    $('no-keys').hidden = shown.size > 0;
    $('keys').hidden = shown.size === 0;
    watchDeadlines([...shown.values()]);
    if (focusKey && !document.activeElement.closest('dialog[open]')) {
      const again = document.querySelector(`tr[data-key-id="${CSS.escape(focusKey)}"] button.${CSS.escape(focusAction)}`);
      if (again) again.focus();
      else if (document.activeElement === document.body) $('create-key').focus();
    }
  } catch (error) {
    report(error);
  }
}

function watchDeadlines(keys) {
  const now = Date.now();
  const due = keys
    .flatMap((key) => [key.previous_secret_valid_until, key.expires_at])
    .filter(Boolean)
    .map((iso) => Date.parse(iso))
    .filter((at) => at > now);
  clearTimeout(stateTimer);
  if (due.length) {
    // A little after the cut-off, once the issuer's scheduler has recorded it.
    const wait = Math.min(...due) - now + 1500;
    stateTimer = setTimeout(() => loadKeys(), Math.min(wait, 2 ** 31 - 1));
  }
}

function stateOf(key) {
  if (key.state === 'rotating' && key.previous_secret_valid_until) {
    return h('span', {}, 'rotating until ', when(key.previous_secret_valid_until));
  }
  return key.state;
}

/** A row's button, named with its key for screen readers. */
function action(kind, label, key, onclick) {
  return h('button', { type: 'button', class: kind, 'aria-label': `${label} “${key.name}”`, onclick }, label);
}

function row(key) {
  const live = key.state === 'active' || key.state === 'rotating';
  const cells = [
    h('td', { 'data-label': 'Name', class: 'name' }, key.name),
    h('td', { 'data-label': 'Key' }, h('code', { title: 'The secret ends with these characters' }, `…${key.hint}`)),
    h(
      'td',
      { 'data-label': 'Scopes' },
      h(
        'ul',
        { class: 'chips' },
        key.scopes.map((scope) =>
          h(
            'li',
            {},
            h('code', {}, scope),
            key.retired_scopes.includes(scope) ? ' (retired)' : null,
          ),
        ),
      ),
    ),
    h(
      'td',
      { 'data-label': 'State', class: 'state' },
      h('span', { class: `badge ${key.state}`, 'data-state': key.state }, stateOf(key)),
    ),
    h('td', { 'data-label': 'Created' }, when(key.created_at, { seconds: false })),
    h('td', { 'data-label': 'Last used' }, when(key.last_used_at, { seconds: false }) || 'never'),
    h(
      'td',
      { class: 'actions-cell' },
      action('activity', 'Activity', key, () => openActivity(key)),
      live && action('rotate', 'Rotate', key, () => openRotate(key)),
      live && action('revoke', 'Revoke', key, () => openRevoke(key)),
      action('delete', 'Delete', key, () => openDelete(key)),
    ),
  ];
  return h('tr', { 'data-key-id': key.key_id, 'data-name': key.name }, cells);
}

$('more-keys').addEventListener('click', () => loadKeys({ more: true }));
$('banner-close').addEventListener('click', clearBanner);

// Cancel buttons close their dialog; a closed dialog forgets its error.
for (const dialog of document.querySelectorAll('dialog')) {
  for (const cancel of dialog.querySelectorAll('.cancel')) {
    cancel.addEventListener('click', () => dialog.close());
  }
  dialog.addEventListener('close', () => {
    for (const error of dialog.querySelectorAll('.error')) formError(error.id, '');
  });
}

// ---------------------------------------------------------------- create

/** The catalogue's live scopes grouped by resource (`claws` of `claws:read`). */
async function scopeGroups() {
  const { scopes } = await call('GET', '/api/v1/scopes');
  const groups = new Map();
  for (const scope of scopes) {
    if (scope.retired || scope.name === '*') continue;
    const resource = scope.name.split(':')[0];
    if (!groups.has(resource)) groups.set(resource, { builtIn: scope.built_in, scopes: [] });
    groups.get(resource).scopes.push(scope);
  }
  // The product's own scopes first, Gatehouse's administration scopes after.
  return [...groups.entries()].sort(
    ([a, x], [b, y]) => Number(x.builtIn) - Number(y.builtIn) || a.localeCompare(b),
  );
}

$('create-key').addEventListener('click', async () => {
  const form = $('create-form');
  form.reset();
  formError('create-error', '');
  $('full-access-warning').hidden = true;
  $('scope-groups').replaceChildren();
  $('create-dialog').showModal();
  $('key-name').focus();
  try {
    const groups = await scopeGroups();
    $('scope-groups').replaceChildren(
      ...groups.map(([resource, group]) =>
        h(
          'fieldset',
          { class: 'group' },
          h('legend', {}, group.builtIn ? `${resource} (Gatehouse)` : resource),
          group.scopes
            .sort((a, b) => a.name.localeCompare(b.name))
            .map((scope) =>
              h(
                'label',
                { class: 'choice' },
                h('input', {
                  type: 'checkbox',
                  name: 'scope',
                  value: scope.name,
                  disabled: $('full-access').checked,
                }),
                h('span', {}, h('code', {}, scope.name), ' ', h('span', { class: 'description' }, scope.description)),
              ),
            ),
        ),
      ),
    );
  } catch (error) {
    report(error, 'create-error');
  }
});

$('full-access').addEventListener('change', () => {
  const full = $('full-access').checked;
  $('full-access-warning').hidden = !full;
  for (const box of $('scope-groups').querySelectorAll('input[type=checkbox]')) {
    box.disabled = full;
    if (full) box.checked = false;
  }
});

$('create-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const name = $('key-name').value.trim();
  const scopes = $('full-access').checked
    ? ['*']
    : [...$('scope-groups').querySelectorAll('input[type=checkbox]:checked')].map((box) => box.value);
  if (!name) return formError('create-error', 'Enter a name for the key.');
  if (!scopes.length) return formError('create-error', 'Choose at least one scope.');
  const body = { name, scopes };
  if ($('key-expiry').value) {
    const at = new Date($('key-expiry').value);
    if (Number.isNaN(at.getTime())) return formError('create-error', 'The expiry is not a date and time.');
    body.expires_at = at.toISOString();
  }
  busy($('generate'), async () => {
    try {
      const created = await call('POST', keysPath(), body);
      $('create-dialog').close();
      showSecret(created.secret, null);
      loadKeys();
    } catch (error) {
      report(error, 'create-error');
    }
  });
});

// ---------------------------------------------------------------- secret

function showSecret(secret, previous) {
  $('secret').textContent = secret;
  $('copy-status').textContent = '';
  const note = $('secret-previous');
  note.hidden = previous === null;
  if (previous === undefined) {
    note.replaceChildren('The previous secret no longer works.');
  } else if (previous) {
    note.replaceChildren('The previous secret keeps working until ', when(previous), ', then it is revoked.');
  }
  $('secret-dialog').showModal();
  $('copy-secret').focus();
}

$('copy-secret').addEventListener('click', async () => {
  const secret = $('secret').textContent;
  try {
    await navigator.clipboard.writeText(secret);
    $('copy-status').textContent = 'Copied to the clipboard.';
  } catch {
    // No clipboard here (not a secure context, or refused): select it instead.
    const range = document.createRange();
    range.selectNodeContents($('secret'));
    const selection = window.getSelection();
    selection.removeAllRanges();
    selection.addRange(range);
    $('copy-status').textContent = 'Selected: press Ctrl+C (⌘C) to copy it.';
  }
});

/** The secret leaves the page as soon as its dialog closes. */
function forgetSecret() {
  $('secret').textContent = '';
  $('copy-status').textContent = '';
}

$('secret-done').addEventListener('click', () => {
  forgetSecret();
  $('secret-dialog').close();
});
// Escape does not close it: the secret is shown only once, so it goes only
// when the user says Done.
$('secret-dialog').addEventListener('cancel', (event) => event.preventDefault());
$('secret-dialog').addEventListener('close', forgetSecret);

// ---------------------------------------------------------------- rotate, revoke, delete

let target = null;

function openFor(dialogId, key) {
  target = key;
  const dialog = $(dialogId);
  dialog.querySelector('form').reset();
  for (const error of dialog.querySelectorAll('.error')) formError(error.id, '');
  for (const span of dialog.querySelectorAll('.target')) span.textContent = `“${key.name}”`;
  dialog.showModal();
  return dialog;
}

function graceSeconds() {
  const choice = $('grace').value;
  if (choice !== 'custom') return Number(choice);
  const seconds = Number($('grace-seconds').value);
  return Number.isInteger(seconds) && seconds >= 0 ? seconds : null;
}

function showCutoff() {
  const custom = $('grace').value === 'custom';
  $('grace-seconds').hidden = !custom;
  $('grace-seconds-label').hidden = !custom;
  const seconds = graceSeconds();
  const cutoff = $('rotate-cutoff');
  if (seconds === null) cutoff.replaceChildren('Enter a whole number of seconds.');
  else if (seconds === 0) cutoff.replaceChildren('The old secret stops working immediately.');
  else {
    cutoff.replaceChildren(
      'The old secret stops working at about ',
      when(new Date(Date.now() + seconds * 1000).toISOString()),
      '.',
    );
  }
}

function openRotate(key) {
  openFor('rotate-dialog', key);
  showCutoff();
  $('grace').focus();
}

$('grace').addEventListener('change', () => {
  showCutoff();
  if ($('grace').value === 'custom') $('grace-seconds').focus();
});
$('grace-seconds').addEventListener('input', showCutoff);

$('rotate-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const seconds = graceSeconds();
  if (seconds === null) return formError('rotate-error', 'Enter a whole number of seconds.');
  const key = target;
  busy($('rotate-confirm'), async () => {
    try {
      const rotated = await call('POST', `${keyPath(key.key_id)}/rotate`, {
        grace_period_seconds: seconds,
      });
      $('rotate-dialog').close();
      showSecret(rotated.secret, rotated.previous_secret_valid_until || undefined);
      loadKeys();
    } catch (error) {
      report(error, 'rotate-error');
    }
  });
});

function openRevoke(key) {
  openFor('revoke-dialog', key);
  $('revoke-reason').focus();
}

$('revoke-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = target;
  const reason = $('revoke-reason').value.trim();
  busy($('revoke-confirm'), async () => {
    try {
      await call('POST', `${keyPath(key.key_id)}/revoke`, reason ? { reason } : {});
      $('revoke-dialog').close();
      loadKeys();
    } catch (error) {
      report(error, 'revoke-error');
    }
  });
});

function openDelete(key) {
  openFor('delete-dialog', key);
  // The safe choice has the focus: Enter does not delete by accident.
  $('delete-dialog').querySelector('.cancel').focus();
}

$('delete-form').addEventListener('submit', (event) => {
  event.preventDefault();
  const key = target;
  busy($('delete-confirm'), async () => {
    try {
      await call('DELETE', keyPath(key.key_id));
      $('delete-dialog').close();
      loadKeys();
    } catch (error) {
      report(error, 'delete-error');
    }
  });
});

// ---------------------------------------------------------------- activity

const KINDS = {
  created: 'Created',
  rotated: 'Rotated',
  grace_expired: 'Old secret revoked (grace period over)',
  revoked: 'Revoked',
  expired: 'Expired',
  deleted: 'Deleted',
  usage: 'Used',
};

/** The live tail being followed, if any. */
let tail = null;

function stopActivity() {
  if (tail) tail.controller.abort();
  tail = null;
  $('activity-live').textContent = '';
  $('activity-view').hidden = true;
  $('activity').replaceChildren();
}

function openActivity(key) {
  stopActivity();
  $('activity-key').textContent = `“${key.name}”`;
  $('no-activity').hidden = false;
  $('activity-error').hidden = true;
  $('activity-view').hidden = false;
  const me = { controller: new AbortController(), keyId: key.key_id, last: 0 };
  tail = me;
  live(me, 'connecting…');
  follow(me);
  $('activity-close').focus();
}

$('activity-close').addEventListener('click', () => {
  stopActivity();
  $('create-key').focus();
});

/** Says how the tail `me` is doing, while it is the one shown. */
function live(me, text) {
  if (tail === me) $('activity-live').textContent = text;
}

/** Follows the key's activity over Server-Sent Events, read with fetch so the
 *  token travels in the Authorization header (EventSource cannot send one,
 *  and a token in the URL would end up in logs). Reconnects with
 *  Last-Event-ID, so nothing is missed or shown twice. */
async function follow(me) {
  while (tail === me) {
    try {
      await streamOnce(me);
      live(me, 'reconnecting…');
    } catch (error) {
      if (tail !== me) return;
      if (error instanceof SessionOver) return;
      if (error.status === 401) {
        // The access token ran out mid-stream: renew it, then reconnect.
        if (!(await refresh())) live(me, 'reconnecting…');
      } else if (!(error instanceof ApiError) || (error.status !== 0 && error.status < 500)) {
        live(me, 'stopped');
        formError('activity-error', error.message);
        return;
      } else {
        live(me, 'reconnecting…');
      }
    }
    await sleep(1000);
  }
}

async function streamOnce(me) {
  if (!session) throw new SessionOver();
  const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${session.access}` };
  if (me.last) headers['Last-Event-ID'] = String(me.last);
  let response;
  try {
    response = await fetch(
      `/api/v1/accounts/${account()}/activity/stream?key_id=${encodeURIComponent(me.keyId)}`,
      { headers, signal: me.controller.signal, credentials: 'omit', cache: 'no-store' },
    );
  } catch (error) {
    if (me.controller.signal.aborted) return;
    throw new ApiError(0, null);
  }
  if (!response.ok) {
    const body = await response.json().catch(() => null);
    throw new ApiError(response.status, body);
  }
  live(me, 'live');
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  for (;;) {
    let chunk;
    try {
      chunk = await reader.read();
    } catch {
      if (me.controller.signal.aborted) return;
      throw new ApiError(0, null);
    }
    if (chunk.done) return;
    buffer += chunk.value;
    let cut;
    while ((cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
      const block = buffer.slice(0, cut);
      buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, '');
      const event = parseEvent(block);
      if (event.event === 'activity') {
        addEntry(JSON.parse(event.data));
        if (event.id) me.last = event.id;
      } else if (event.event === 'error') {
        const body = JSON.parse(event.data || 'null');
        throw new ApiError(body ? body.statusCode : 500, body);
      }
    }
  }
}

function parseEvent(block) {
  const event = { event: 'message', data: '', id: '' };
  for (const line of block.split(/\r?\n/)) {
    if (line.startsWith(':')) continue;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    const value = colon < 0 ? '' : line.slice(colon + 1).replace(/^ /, '');
    if (field === 'data') event.data += (event.data ? '\n' : '') + value;
    else if (field === 'event') event.event = value;
    else if (field === 'id') event.id = value;
  }
  return event;
}

/** One line of details: a usage summary's counts, or a lifecycle event's
 *  reason, scope and client address. */
function describe(entry) {
  const details = entry.details && typeof entry.details === 'object' ? { ...entry.details } : {};
  const parts = [];
  if (details.usage && typeof details.usage === 'object') {
    // The summary itself, however the event is tagged.
    const usage = 'uses' in details.usage ? details.usage : Object.values(details.usage)[0] || {};
    parts.push(`${usage.uses ?? 0} allowed`);
    if (usage.denials) {
      const reasons = Object.entries(usage.denials_by_reason || {})
        .map(([reason, count]) => `${reason} ×${count}`)
        .join(', ');
      parts.push(`${usage.denials} denied${reasons ? ` (${reasons})` : ''}`);
    }
    if (usage.distinct_callers) parts.push(`${usage.distinct_callers} caller(s), last ${usage.last_caller || 'unknown'}`);
    delete details.usage;
  }
  for (const [name, value] of Object.entries(details)) {
    if (value !== null && value !== '' && typeof value !== 'object') {
      parts.push(`${name.replaceAll('_', ' ')}: ${value}`);
    }
  }
  return parts.join(' · ');
}

function actor(entry) {
  if (!entry.actor) return null;
  const you = session && entry.actor === session.user.id;
  return h('span', { class: 'actor' }, you ? ' by you' : ` by ${entry.actor}`);
}

function addEntry(entry) {
  const list = $('activity');
  // Cursors are opaque, and the same for an entry each time it comes.
  if ([...list.children].some((other) => other.dataset.cursor === entry.cursor)) return;
  const item = h(
    'li',
    { 'data-cursor': entry.cursor, 'data-kind': entry.kind },
    when(entry.at),
    ' ',
    h('strong', {}, KINDS[entry.kind] || entry.kind),
    actor(entry),
    describe(entry) ? h('span', { class: 'details' }, describe(entry)) : null,
  );
  // Entries arrive in log order (the history, then the tail): newest first.
  list.insertBefore(item, list.firstChild);
  $('no-activity').hidden = true;
  // A lifecycle change also changes the key's row.
  if (entry.kind !== 'usage') loadKeysSoon();
}

let reloadSoon = null;
function loadKeysSoon() {
  clearTimeout(reloadSoon);
  reloadSoon = setTimeout(() => session && loadKeys(), 200);
}

// Ready: the sign-in form works from here on.
$('loading').hidden = true;
$('sign-in-submit').disabled = false;
