// The languages of the widget and the console (web/i18n/), without a browser: every language has
// the same keys with the same {placeholders}; every key the code asks for exists and every key
// exists for a reason; no user-visible string is left written in the code; the language is
// chosen from ChatWidgetConfig.locale or the browser's languages.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import vm from 'node:vm';
import { fileURLToPath } from 'node:url';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const read = (file) => readFileSync(path.join(WEB, file), 'utf8');
const LANGUAGES = ['en', 'zh-CN'];
// Every file that shows text, and the page whose static text the console translates.
const CODE = ['widget/widget.js', 'widget/state.js', 'widget/identity.js', 'widget/ui.js',
  'widget/offline.js', 'widget/messages.js', 'widget/read-receipts.js', 'widget/transports.js',
  'widget/connection.js', 'widget/typing.js', 'widget/visitor-context.js', 'admin/console.js', 'admin/session.js', 'admin/read-receipts.js',
  'admin/transfer.js', 'admin/replies.js', 'admin/visitor-panel.js', 'admin/site-switcher.js',
  'admin/alerts.js', 'admin/language.js', 'admin/signals.js', 'admin/canned.js', 'admin/search.js',
  'widget/attachments.js', 'admin/attachments.js', 'shared/dom.js', 'shared/backoff.js', 'shared/attachments.js'];
const PAGE = 'admin/index.html';
// Keys read by name rather than through t().
const READ_DIRECTLY = new Set(['language.name']);

// Runs i18n.js and the tables as the gateway serves them to the widget: in one scope.
function load() {
  const context = vm.createContext({});
  for (const file of ['i18n/i18n.js', 'i18n/en.js', 'i18n/zh-CN.js']) vm.runInContext(read(file), context, { filename: file });
  return context;
}

const placeholders = (text) => [...text.matchAll(/\{(\w+)\}/g)].map((m) => m[1]).sort();

function keysUsed() {
  const used = new Map(); // key -> file
  for (const file of CODE) {
    for (const m of read(file).matchAll(/\bt\(\s*'([^']+)'/g)) used.set(m[1], file);
  }
  const html = read(PAGE);
  for (const m of html.matchAll(/data-i18n="([^"]+)"/g)) used.set(m[1], PAGE);
  for (const m of html.matchAll(/data-i18n-attr="([^"]+)"/g)) {
    for (const pair of m[1].split(';')) used.set(pair.split(':')[1].trim(), PAGE);
  }
  return used;
}

test('every language has the same keys, each a non-empty string with the same placeholders', () => {
  const { ChatLocales } = load();
  assert.deepEqual(Object.keys(ChatLocales).sort(), [...LANGUAGES].sort());
  const en = ChatLocales.en;
  for (const lang of LANGUAGES) {
    const table = ChatLocales[lang];
    assert.deepEqual(Object.keys(table).sort(), Object.keys(en).sort(), `${lang} has the keys of en`);
    for (const [key, text] of Object.entries(table)) {
      assert.equal(typeof text, 'string', `${lang} ${key}`);
      assert.ok(text.trim(), `${lang} ${key} is empty`);
      assert.deepEqual(placeholders(text), placeholders(en[key]), `${lang} ${key} placeholders`);
    }
  }
  // Translated, not copied (addresses and the language-neutral sample email aside).
  const same = Object.keys(en).filter((k) => ChatLocales['zh-CN'][k] === en[k]);
  assert.deepEqual(same, ['widget.emailPlaceholder']);
});

test('the code asks only for keys that exist, and every key is asked for', () => {
  const { ChatLocales } = load();
  const used = keysUsed();
  assert.ok(used.size > 100, `found ${used.size} keys in use`);
  for (const [key, file] of used) assert.ok(key in ChatLocales.en, `${file} uses ${key}, which en.js lacks`);
  for (const key of Object.keys(ChatLocales.en)) {
    assert.ok(used.has(key) || READ_DIRECTLY.has(key), `${key} is in en.js but used nowhere`);
  }
});

test('no user-visible string is written in the code', () => {
  const patterns = [
    // Element text, labels and placeholders given as literal words.
    /\b(text|placeholder|title|'aria-label')\s*:\s*'[^']*[A-Za-z]{2}[^']*'/,
    /\.(textContent|title|placeholder)\s*=\s*'[^']*[A-Za-z]{2}[^']*'/,
    /setAttribute\('(aria-label|title|placeholder)',\s*'[^']*[A-Za-z]{2}/,
    // Status lines and errors shown to people.
    /\b(setBanner|setConnection)\(\s*'[a-z]+',\s*'/,
    /\b(scheduleReconnect|showPaneError|retry)\(\s*'/,
    /\b(setBanner|setConnection|scheduleReconnect|showPaneError)\([^;]*'[^']*[A-Z][a-z]+ [a-z]+[^']*'/,
  ];
  const offenders = [];
  for (const file of CODE) {
    read(file).split('\n').forEach((line, i) => {
      const code = line.replace(/\/\/.*$/, '');
      if (/^\s*\*/.test(line) || /console\.(warn|info|error|log)\(/.test(code)) return; // comments, logs
      for (const p of patterns) if (p.test(code)) offenders.push(`${file}:${i + 1}: ${line.trim()}`);
    });
  }
  // The console page: every element with words carries data-i18n (the command in <code> aside).
  const html = read(PAGE).replace(/<code>[^<]*<\/code>/g, '').replace(/<head>[\s\S]*<\/head>/, '');
  for (const m of html.matchAll(/<(\w+)([^>]*)>([^<]*[A-Za-z]{2}[^<]*)</g)) {
    if (!/data-i18n="/.test(m[2])) offenders.push(`${PAGE}: <${m[1]}> "${m[3].trim()}"`);
  }
  for (const m of html.matchAll(/\s(placeholder|aria-label)="([^"]*)"/g)) {
    const tag = html.slice(html.lastIndexOf('<', m.index), html.indexOf('>', m.index));
    if (!tag.includes(`${m[1]}:`)) offenders.push(`${PAGE}: ${m[1]}="${m[2]}" untranslated`);
  }
  assert.deepEqual(offenders, []);
});

test('the language comes from the config, else the browser\'s first supported language, else English', () => {
  const { chatPickLocale, chatI18n } = load();
  const cases = [
    [undefined, ['zh-CN', 'en'], 'zh-CN'],
    [undefined, ['zh'], 'zh-CN'],
    [undefined, ['zh-Hans-CN'], 'zh-CN'],
    [undefined, ['zh-SG'], 'zh-CN'],
    [undefined, ['zh-TW'], 'en'],
    [undefined, ['zh-Hant-HK', 'zh-CN'], 'zh-CN'],
    [undefined, ['fr-FR', 'zh-CN'], 'zh-CN'],
    [undefined, ['en-GB', 'zh-CN'], 'en'],
    [undefined, ['de', 'fr'], 'en'],
    [undefined, [], 'en'],
    ['zh-CN', ['en-US'], 'zh-CN'],
    ['en', ['zh-CN'], 'en'],
    ['klingon', ['zh-CN'], 'zh-CN'],
    [42, undefined, 'en'],
  ];
  for (const [requested, browser, want] of cases) {
    assert.equal(chatPickLocale(requested, browser), want, `${requested} / ${JSON.stringify(browser)}`);
  }
  const zh = chatI18n('zh-CN', []);
  assert.equal(zh.t('widget.reconnectingIn', { seconds: 3 }), '3 秒后重新连接…');
  assert.equal(zh.t('widget.title'), '在线咨询');
  assert.equal(zh.t('no.such.key'), 'no.such.key');
  const en = chatI18n(undefined, ['en-US']);
  assert.equal(en.t('widget.notSent', { reason: '{seconds}' }), 'Not sent: {seconds}', 'values are not re-expanded');
  // Dates and times in the language's own format.
  const at = '2026-03-04T15:06:00Z';
  assert.notEqual(zh.dateTime(at), en.dateTime(at));
  assert.match(zh.dateTime(at), /2026年3月4日/);
  assert.equal(en.time('not a date'), '');
});
