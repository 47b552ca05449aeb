/*
 * Offline capture in the visitor widget: while no agent of the site is online, a form asks for an
 * email address to answer at (`contact`, docs/protocol.md "Offline capture").
 *
 * Served by the gateway with the widget's other files in one strict function scope, in the order
 * gateway/src/assets.rs lists them (state.js first, widget.js last): what one file declares the
 * others use, and none of it becomes a global of the customer's page.
 */

// ---------------------------------------------------------------------------------------------
// Offline capture: while no agent of the site is online, say so and offer a field for an email
// address (sent with `contact`, docs/protocol.md); the visitor can write all the same. Once
// given (remembered with the visitor's token), the form says where we will answer.

const EMAIL_SHAPE = /^[^\s@<>]+@[^\s@<>]+\.[^\s@<>]+$/;
const MAX_EMAIL_BYTES = 254;

function buildOfflineForm() {
  const note = h('p', { class: 'offline-note', 'data-testid': 'chat-offline-note', text: t('widget.offlineAsk') });
  const email = h('input', {
    type: 'email', class: 'offline-email', 'data-testid': 'chat-offline-email', autocomplete: 'email',
    placeholder: t('widget.emailPlaceholder'), 'aria-label': t('widget.emailLabel'), maxlength: String(MAX_EMAIL_BYTES),
  });
  const submit = h('button', { type: 'submit', class: 'offline-submit', 'data-testid': 'chat-offline-submit', text: t('widget.emailSubmit') });
  const fields = h('div', { class: 'offline-fields' }, [email, submit]);
  const box = h('form', { class: 'offline', 'data-testid': 'chat-offline', 'data-state': contactState, 'aria-label': t('widget.offlineTitle'), novalidate: true, hidden: true }, [note, fields]);
  box.addEventListener('submit', function (e) { e.preventDefault(); submitContact(); });
  return { box: box, note: note, email: email, submit: submit, fields: fields };
}

function renderOffline() {
  if (!ui || !ui.offline) return;
  const o = ui.offline;
  const show = offlineEmail && connection.state === 'open' && agentsOnline === 0;
  o.box.hidden = !show;
  o.box.setAttribute('data-state', contactState);
  o.fields.hidden = contactState === 'sent';
  o.submit.disabled = contactState === 'sending' || !transport || !welcomed;
  if (contactState === 'sent') o.note.textContent = t('widget.emailSaved', { email: saved.email || '' });
  else if (contactState === 'error') o.note.textContent = o.errorText || t('widget.emailInvalid');
  else o.note.textContent = t('widget.offlineAsk');
}

function submitContact() {
  const email = ui.offline.email.value.trim();
  if (!EMAIL_SHAPE.test(email) || new TextEncoder().encode(email).length > MAX_EMAIL_BYTES) {
    ui.offline.errorText = t('widget.emailInvalid');
    contactState = 'error';
    renderOffline();
    return;
  }
  if (!transport || !welcomed) return;
  contactState = 'sending';
  request({ type: 'contact', email: email }, { kind: 'contact', email: email });
  renderOffline();
}

function onContactSaved(email) {
  saved.email = email;
  persist();
  contactState = 'sent';
  renderOffline();
}

function onContactFailed(err) {
  contactState = 'error';
  ui.offline.errorText = err.code === 'rate_limited' ? t('widget.emailTooOften') : t('widget.emailInvalid');
  renderOffline();
}
