/*
 * Languages of the visitor widget and the agent console (issue 15). Every string a person reads
 * lives in one file per language, web/i18n/<tag>.js, which adds its table to `ChatLocales`;
 * all tables have the same keys (web/tests/i18n.test.mjs checks them and the keys the code uses).
 *
 * The console loads this file and the tables as scripts of its own (/chat/admin/i18n/…); the
 * widget is one script on pages we do not control, so the gateway serves this file, the tables
 * and widget.js inside one function scope (gateway/src/assets.rs): nothing here becomes a global
 * of the customer's page.
 *
 * chatI18n(requested, browserLanguages) picks the language (the requested one when supported,
 * else the first supported one the browser prefers, else English) and returns
 * { locale, t(key, vars), time(iso), dateTime(iso), shortDateTime(iso), size(bytes) }; t() fills
 * {name} placeholders, falls back to English for a key a table lacks, and to the key itself;
 * size() writes a file size in the language's units (12 kB, 1.5 MB).
 */
var ChatLocales = typeof ChatLocales === 'object' && ChatLocales ? ChatLocales : {};

// The supported language a BCP 47 tag asks for, or null: zh, zh-CN, zh-SG and zh-Hans-* are
// Simplified Chinese; other Chinese (zh-TW, zh-Hant-*) is not, so it falls through.
function chatLocaleOf(tag) {
  if (typeof tag !== 'string' || !tag) return null;
  const lower = tag.toLowerCase().replace(/_/g, '-');
  if (lower === 'zh' || lower === 'zh-cn' || lower === 'zh-sg' || lower.indexOf('zh-hans') === 0) return 'zh-CN';
  if (lower === 'en' || lower.indexOf('en-') === 0) return 'en';
  return null;
}

function chatPickLocale(requested, browserLanguages) {
  const wanted = [requested].concat(Array.isArray(browserLanguages) ? browserLanguages : []);
  for (const tag of wanted) {
    const locale = chatLocaleOf(tag);
    if (locale && ChatLocales[locale]) return locale;
  }
  return 'en';
}

function chatI18n(requested, browserLanguages) {
  const locale = chatPickLocale(requested, browserLanguages);
  const table = ChatLocales[locale] || {};
  const fallback = ChatLocales.en || {};
  const formatters = {};

  function t(key, vars) {
    let text = Object.prototype.hasOwnProperty.call(table, key) ? table[key]
      : Object.prototype.hasOwnProperty.call(fallback, key) ? fallback[key] : key;
    if (vars) {
      text = text.replace(/\{(\w+)\}/g, function (whole, name) {
        return Object.prototype.hasOwnProperty.call(vars, name) ? String(vars[name]) : whole;
      });
    }
    return text;
  }

  function format(kind, options, iso) {
    const d = iso instanceof Date ? iso : new Date(iso);
    if (isNaN(d.getTime())) return '';
    try {
      if (!formatters[kind]) formatters[kind] = new Intl.DateTimeFormat(locale, options);
      return formatters[kind].format(d);
    } catch (_) {
      return d.toISOString();
    }
  }

  return {
    locale: locale,
    t: t,
    time: function (iso) { return format('time', { hour: '2-digit', minute: '2-digit' }, iso); },
    shortDateTime: function (iso) {
      return format('short', { month: 'short', day: 'numeric', hour: '2-digit', minute: '2-digit' }, iso);
    },
    dateTime: function (iso) { return format('full', { dateStyle: 'medium', timeStyle: 'medium' }, iso); },
    size: function (bytes) {
      const n = Number(bytes) || 0;
      const [value, unit] = n < 1024 ? [n, 'byte'] : n < 1024 * 1024 ? [n / 1024, 'kilobyte'] : [n / (1024 * 1024), 'megabyte'];
      try {
        return new Intl.NumberFormat(locale, { style: 'unit', unit: unit, unitDisplay: 'short', maximumFractionDigits: 1 }).format(value);
      } catch (_) {
        return Math.round(n) + ' B';
      }
    },
  };
}
