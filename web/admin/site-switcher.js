/*
 * Site switcher of the agent console (docs/sites.md): which of the agent's sites the
 * conversation list shows. `welcome.sites` is the agent's sites (["*"]: every site). With one
 * site there is nothing to switch and the switcher stays hidden; with several (or every site) it
 * offers "All sites" (list_conversations without `site`: every site of the agent, each
 * conversation labelled with its site) or one site (with `site`). The choice is remembered per
 * agent in localStorage. An agent of every site has no list of sites to offer, so the switcher
 * offers the sites seen in its lists (and the remembered one).
 *
 * console.js (loaded after this file) calls window.ChatSiteSwitcher.welcome(sites, agentId) on
 * every welcome, filter() for list_conversations' fields, shows(conversation) to filter live
 * events, spansSeveral() to label sites, seen(conversations) after each list; a change of choice
 * is announced with a `chat-console:site` event on `document`.
 */
(function () {
  'use strict';

  const ALL = '';
  const MAX_SEEN = 200; // sites kept for an agent of every site: a bounded menu
  const select = document.getElementById('site-switcher');

  let sites = []; // the agent's sites, or ['*']
  let storageKey = null;
  let chosen = null; // a site id, or null: every site of the agent
  const seenSites = new Set();

  function everySite() { return sites.indexOf('*') >= 0; }
  function switchable() { return everySite() || sites.length > 1; }
  function mine(site) { return everySite() || sites.indexOf(site) >= 0; }

  function remembered() {
    try { return localStorage.getItem(storageKey); } catch (_) { return null; }
  }
  function remember(site) {
    try {
      if (site) localStorage.setItem(storageKey, site);
      else localStorage.removeItem(storageKey);
    } catch (_) { /* forgotten on reload */ }
  }

  function option(value, text) {
    const o = document.createElement('option');
    o.value = value;
    o.textContent = text;
    return o;
  }

  function render() {
    if (!select) return;
    select.hidden = !switchable();
    if (select.hidden) return;
    const list = everySite() ? Array.from(seenSites) : sites.slice();
    if (chosen && list.indexOf(chosen) < 0) list.push(chosen);
    list.sort();
    select.replaceChildren(option(ALL, window.ChatConsoleI18n.t('console.allSites')), ...list.map(function (s) { return option(s, s); }));
    select.value = chosen || ALL;
  }

  if (select) {
    select.addEventListener('change', function () {
      chosen = select.value || null;
      remember(chosen);
      document.dispatchEvent(new CustomEvent('chat-console:site', { detail: { site: chosen } }));
    });
  }

  window.ChatSiteSwitcher = {
    // The agent's sites from `welcome` (older gateways send none: one unnamed scope).
    welcome: function (agentSites, agentId) {
      sites = Array.isArray(agentSites) ? agentSites.filter(function (s) { return typeof s === 'string' && s; }) : [];
      storageKey = 'chat-admin-site:' + agentId;
      const saved = remembered();
      chosen = switchable() && saved && mine(saved) ? saved : null;
      if (chosen && everySite()) seenSites.add(chosen);
      render();
    },
    // The fields list_conversations takes for the current choice.
    filter: function () { return chosen ? { site: chosen } : {}; },
    // Whether a conversation belongs in the list (live events of the agent's other sites do not
    // while one site is chosen; a conversation not yet listed has no site and waits for the list).
    shows: function (conv) { return !chosen || (conv && conv.site_id === chosen); },
    // Whether the list spans several sites, so each conversation shows its own.
    spansSeveral: function () { return switchable() && !chosen; },
    // Sites seen in a list: the menu of an agent of every site.
    seen: function (conversations) {
      if (!everySite()) return;
      const before = seenSites.size;
      for (const c of conversations) {
        if (c && typeof c.site_id === 'string' && seenSites.size < MAX_SEEN) seenSites.add(c.site_id);
      }
      if (seenSites.size !== before) render();
    },
  };
})();
