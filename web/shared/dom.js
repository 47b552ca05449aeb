/*
 * DOM helpers shared by the visitor widget and the agent console: one way to build elements, in
 * which data only ever becomes text (textContent, text nodes), never markup. Message bodies,
 * names and file names come from anonymous people.
 *
 * Like ../i18n/i18n.js, this file is loaded twice over: the console loads it as a script of its
 * own (/chat/admin/shared/dom.js), so its functions are globals of the console's page; the widget
 * is one script on pages we do not control, so the gateway serves this file inside the widget's
 * function scope (gateway/src/assets.rs) and nothing here becomes a global of the customer's page.
 */

// chatElement(tag, attrs, children) builds an element.
//   attrs: each becomes an attribute (true: present and empty; false, null, undefined: left
//     out), except `text`, which sets the text content, and `on<event>`, which adds a listener.
//   children: an array of nodes and strings (strings become text nodes; null and undefined are
//     skipped), or a single string or number, which becomes the text content, or a single node.
function chatElement(tag, attrs, children) {
  'use strict';
  const el = document.createElement(tag);
  if (attrs) {
    for (const name of Object.keys(attrs)) {
      const v = attrs[name];
      if (v === null || v === undefined || v === false) continue;
      if (name === 'text') el.textContent = String(v);
      else if (name.startsWith('on')) el.addEventListener(name.slice(2), v);
      else el.setAttribute(name, v === true ? '' : String(v));
    }
  }
  if (children === null || children === undefined) return el;
  if (!Array.isArray(children)) {
    if (typeof children === 'object') el.appendChild(children);
    else el.textContent = String(children);
    return el;
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  return el;
}

// chatIcon(d) is a 24×24 SVG icon of one path, hidden from assistive technology (the button
// that holds it carries the label). Built node by node: parsing markup would throw on sites that
// enforce Trusted Types.
function chatIcon(d) {
  'use strict';
  const SVG_NS = 'http://www.w3.org/2000/svg';
  const icon = document.createElementNS(SVG_NS, 'svg');
  icon.setAttribute('viewBox', '0 0 24 24');
  icon.setAttribute('aria-hidden', 'true');
  const path = document.createElementNS(SVG_NS, 'path');
  path.setAttribute('d', d);
  icon.appendChild(path);
  return icon;
}
