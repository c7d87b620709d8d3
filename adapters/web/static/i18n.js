// The page's sentences in the reader's language. Strings are written in English and marked with _() or
// ngettext() (extracted into the bot's catalogs by `make i18n`, see docs/i18n.md); the translations come
// from /api/i18n. {field} placeholders are filled after translating, as text.
"use strict";

window.PaiI18n = (() => {
  const state = { locale: "en", messages: {} };

  function fill(text, fields) {
    if (!fields) return text;
    return text.replace(/\{(\w+)\}/g, (whole, key) => (Object.prototype.hasOwnProperty.call(fields, key) ? String(fields[key]) : whole));
  }

  function gettext(msgid, fields) {
    const t = state.messages[msgid];
    return fill(typeof t === "string" && t ? t : msgid, fields);
  }

  // One plural form (Chinese) or two (English-like: one / other).
  function ngettext(singular, plural, n, fields) {
    const t = state.messages[singular];
    const all = Object.assign({ n }, fields || {});
    if (Array.isArray(t) && t.length) return fill(t.length === 1 ? t[0] : t[n === 1 ? 0 : 1], all);
    return fill(n === 1 ? singular : plural, all);
  }

  function use(data) {
    if (data && typeof data.locale === "string" && data.messages && typeof data.messages === "object") {
      state.locale = data.locale;
      state.messages = data.messages;
    }
  }

  return {
    _: gettext,
    ngettext,
    use,
    get locale() { return state.locale; },
  };
})();
