// Chat clients for the fault-injection run: one ChatClient (a visitor or an agent) over one of
// four transports — raw WebSocket (`ws`), the raw protocol over HTTP long-polling (fetch), and the
// stock socket.io-client (polling upgraded to WebSocket, or WebSocket only). Every client keeps
// its own record of what it sent, what was acknowledged, how often it retried, and every
// `message` event it saw, tagged with the connection it arrived on; the run checks those records
// against each other and the database at the end.
import WebSocket from 'ws';
import { io } from 'socket.io-client';

export const TRANSPORTS = ['ws', 'poll', 'sio', 'sio-ws'];
const REQUEST_TIMEOUT_MS = 5_000;

class Closed extends Error {
  constructor(why) { super(`disconnected (${why})`); this.code = 'disconnected'; }
}

// -------------------------------------------------------------------------------------------------
// Transports. Each connection object: kind, gw (gateway index), request(type, fields, ms) ->
// Promise(ack fields | {error}), cut() (abrupt), stall(ms) -> bool, close(). It calls
// client.onFrame(conn, event) for server events and client.onClosed(conn, info) once.

let requestIds = 0;

class Pending {
  constructor() { this.map = new Map(); }
  // `onAnswer` runs synchronously with the answer, before any frame that follows it is handled
  // (a promise continuation would run only after the rest of the TCP chunk was dispatched).
  add(id, ms, what, onAnswer) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => { this.map.delete(id); reject(Object.assign(new Error(`${what}: no answer within ${ms} ms`), { code: 'timeout' })); }, ms);
      this.map.set(id, { resolve, reject, timer, onAnswer });
    });
  }
  answer(id, value) {
    const p = this.map.get(id);
    if (!p) return;
    this.map.delete(id);
    clearTimeout(p.timer);
    if (p.onAnswer) p.onAnswer(value);
    p.resolve(value);
  }
  failAll(err) {
    for (const p of this.map.values()) { clearTimeout(p.timer); p.reject(err); }
    this.map.clear();
  }
}

function answerOf(frame) {
  if (frame.type === 'error') return { error: { code: frame.code, message: frame.message } };
  const { type: _t, id: _i, ...rest } = frame;
  return rest;
}

class RawWsConn {
  constructor(client, gw) {
    this.kind = 'ws';
    this.client = client;
    this.gw = gw;
    this.pending = new Pending();
    this.closed = false;
    const base = client.world.gateways[gw].port;
    const q = client.role === 'agent'
      ? `/ws-admin/?token=${encodeURIComponent(client.agentToken)}`
      : `/ws-visitor/?site=default${client.visitorToken ? `&token=${encodeURIComponent(client.visitorToken)}` : ''}`;
    this.ws = new WebSocket(`ws://127.0.0.1:${base}${q}`);
    this.ws.on('message', (data) => {
      if (this.closed) return;
      let f;
      try { f = JSON.parse(data.toString()); } catch { return; }
      if ((f.type === 'ack' || f.type === 'error') && f.id) this.pending.answer(f.id, answerOf(f));
      else client.onFrame(this, f);
    });
    this.ws.on('error', () => {});
    this.ws.on('close', (code) => this.finish({ code, why: this.cutWhy || `close ${code}` }));
  }
  finish(info) {
    if (this.closed) return;
    this.closed = true;
    clearTimeout(this.stallTimer);
    this.pending.failAll(new Closed(info.why));
    this.client.onClosed(this, info);
  }
  request(type, fields, ms = REQUEST_TIMEOUT_MS, onAnswer = null) {
    if (this.closed || this.ws.readyState !== WebSocket.OPEN) return Promise.reject(new Closed('not open'));
    const id = `r${++requestIds}`;
    const p = this.pending.add(id, ms, type, onAnswer);
    this.ws.send(JSON.stringify({ type, id, ...fields }));
    return p;
  }
  cut() {
    this.cutWhy = 'cut';
    this.ws.terminate();
  }
  /** Stops reading the socket: the gateway's writes back up, its bounded queue fills. */
  stall(ms) {
    const sock = this.ws._socket;
    if (this.closed || !sock) return false;
    sock.pause();
    this.stallTimer = setTimeout(() => { if (!sock.destroyed) sock.resume(); }, ms);
    return true;
  }
  close() { this.cutWhy = 'end'; try { this.ws.close(1000); } catch { this.ws.terminate(); } }
}

async function fetchJson(url, init, ms, ctrl = new AbortController()) {
  const timer = setTimeout(() => ctrl.abort(), ms);
  try {
    const res = await fetch(url, { ...init, signal: ctrl.signal });
    const text = await res.text();
    let data = null;
    try { data = text ? JSON.parse(text) : null; } catch { data = null; }
    return { status: res.status, data };
  } finally {
    clearTimeout(timer);
  }
}

class PollConn {
  constructor(client, gw) {
    this.kind = 'poll';
    this.client = client;
    this.gw = gw;
    this.pending = new Pending();
    this.closed = false;
    this.ctrls = new Set();
    this.stalledUntil = 0;
    const port = client.world.gateways[gw].port;
    this.path = `http://127.0.0.1:${port}/${client.role === 'agent' ? 'ws-admin' : 'ws-visitor'}/poll`;
    this.open();
  }
  url(params) {
    const u = new URL(this.path);
    for (const [k, v] of Object.entries(params)) if (v != null) u.searchParams.set(k, String(v));
    return u.toString();
  }
  async call(url, init, ms) {
    const ctrl = new AbortController();
    this.ctrls.add(ctrl);
    try { return await fetchJson(url, init, ms, ctrl); } finally { this.ctrls.delete(ctrl); }
  }
  async open() {
    const c = this.client;
    const params = c.role === 'agent' ? { token: c.agentToken } : { site: 'default', token: c.visitorToken };
    let r;
    try { r = await this.call(this.url(params), { method: 'POST', body: '' }, 10_000); } catch (e) { return this.finish({ why: `open failed: ${e.cause?.code || e.name}` }); }
    if (this.closed) return;
    if (r.status !== 200 || !r.data?.sid) return this.finish({ why: `open answered ${r.status}` });
    this.sid = r.data.sid;
    this.cursor = r.data.cursor;
    this.deliver(r.data.events);
    this.loop();
  }
  deliver(events) {
    for (const f of events || []) {
      if (this.closed) return;
      this.client.onFrame(this, f);
    }
  }
  async loop() {
    while (!this.closed) {
      const wait = this.stalledUntil - Date.now();
      if (wait > 0) { await new Promise((r) => setTimeout(r, wait)); continue; }
      let r;
      try {
        r = await this.call(this.url({ sid: this.sid, cursor: this.cursor }), { method: 'GET' }, 20_000);
      } catch (e) {
        return this.finish({ why: `GET failed: ${e.cause?.code || e.name}` });
      }
      if (this.closed) return;
      if (r.status === 410) return this.finish({ why: 'expired (410)', expired: true });
      if (r.status !== 200 || !Array.isArray(r.data?.events)) return this.finish({ why: `GET answered ${r.status}` });
      this.cursor = r.data.cursor;
      this.deliver(r.data.events);
    }
  }
  finish(info) {
    if (this.closed) return;
    this.closed = true;
    for (const c of this.ctrls) c.abort();
    this.pending.failAll(new Closed(info.why));
    this.client.onClosed(this, info);
  }
  request(type, fields, ms = REQUEST_TIMEOUT_MS, onAnswer = null) {
    if (this.closed || !this.sid) return Promise.reject(new Closed('not open'));
    const id = `r${++requestIds}`;
    const p = this.pending.add(id, ms, type, onAnswer);
    this.call(this.url({ sid: this.sid }), { method: 'POST', body: JSON.stringify({ type, id, ...fields }) }, ms).then((r) => {
      if (this.closed) return;
      if (r.status === 200 && Array.isArray(r.data?.answers)) {
        for (const a of r.data.answers) if (a?.id) this.pending.answer(a.id, answerOf(a));
      } else if (r.status === 410) {
        this.finish({ why: 'expired (410)', expired: true });
      } else {
        this.finish({ why: `POST answered ${r.status}` });
      }
    }, (e) => this.finish({ why: `POST failed: ${e.cause?.code || e.name}` }));
    return p;
  }
  cut() { this.finish({ why: 'cut' }); }
  /** Stops fetching events: the session's unacknowledged events pile up until it expires. */
  stall(ms) {
    if (this.closed) return false;
    this.stalledUntil = Date.now() + ms;
    return true;
  }
  close() { this.finish({ why: 'end' }); }
}

/**
 * The stock socket.io-client with its own reconnection and connection-state recovery. One object
 * for the client's lifetime; before every reconnection attempt it picks a gateway at random.
 */
class SioDriver {
  constructor(client, gw, transports) {
    this.kind = client.transport;
    this.client = client;
    this.gw = gw;
    this.closed = false;
    const auth = client.role === 'agent' ? { token: client.agentToken } : { site: 'default' };
    this.socket = io(client.world.base(gw), {
      path: client.role === 'agent' ? '/ws-admin' : '/ws-visitor',
      transports,
      auth,
      reconnectionDelay: 100,
      reconnectionDelayMax: 1000,
      randomizationFactor: 0.5,
      timeout: 5000,
    });
    const s = this.socket;
    s.io.on('reconnect_attempt', () => {
      this.gw = client.world.pickGateway(client);
      s.io.uri = client.world.base(this.gw);
    });
    s.on('connect', () => client.onSioConnect(this, s.recovered));
    s.on('disconnect', (reason) => client.onSioDisconnect(this, reason));
    s.on('connect_error', () => {});
    for (const type of ['welcome', 'message', 'conversation', 'presence']) {
      s.on(type, (payload) => client.onFrame(this, { type, ...payload }));
    }
  }
  request(type, fields, ms = REQUEST_TIMEOUT_MS, onAnswer = null) {
    if (!this.socket.connected) return Promise.reject(new Closed('not connected'));
    return new Promise((resolve, reject) => {
      this.socket.timeout(ms).emit(type, fields, (err, answer) => {
        if (err) return reject(Object.assign(new Error(`${type}: ${err.message}`), { code: 'timeout' }));
        if (onAnswer) onAnswer(answer);
        return resolve(answer);
      });
    });
  }
  cut() {
    const engine = this.socket.io.engine;
    const ws = engine?.transport?.ws;
    if (ws && ws._socket) ws._socket.destroy(); // abrupt: the TCP connection just goes away
    else engine?.close();
  }
  stall() { return false; }
  close() { this.closed = true; this.socket.close(); }
}

// -------------------------------------------------------------------------------------------------

/** Per conversation, what one client saw. */
class ConvView {
  constructor() {
    this.seen = new Set();
    this.events = []; // [connSeq, seq, preResume(0|1), replay(0|1)]
    this.contiguous = 0;
    this.max = 0;
  }
  add(seq) {
    this.seen.add(seq);
    if (seq > this.max) this.max = seq;
    while (this.seen.has(this.contiguous + 1)) this.contiguous++;
  }
}

export class ChatClient {
  constructor(world, { role, name, transport, agentToken = null }) {
    this.world = world;
    this.role = role;
    this.name = name;
    this.transport = transport;
    this.agentToken = agentToken;
    this.visitorToken = null;
    this.visitorId = null;
    this.convs = new Map(); // conversation id -> ConvView
    this.sent = new Map(); // client_msg_id -> { body, conv, attempts, acks: [{conv, seq, duplicate}], errors: [] }
    this.sendOrder = [];
    this.retries = 0;
    this.reconnects = 0; // connections after the first
    this.recovered = 0; // reconnections that resumed (resume acked, or socket.recovered)
    this.resumes = []; // [time] of every completed resume (first connection included)
    this.closes = {}; // why -> count
    this.stalls = 0;
    this.stalledUntil = 0;
    this.stallHistory = []; // [from, to]
    this.conn = null;
    this.connSeq = 0;
    this.connReady = false; // welcomed
    this.connResumed = false;
    this.replayLeft = 0;
    this.attempt = 0;
    this.running = true;
    this.readyWaiters = [];
    this.replyQueue = [];
    this.sendCount = 0;
    this.finalReplayed = null;
    this.finalResumeSent = false;
    this.finalFresh = 0; // messages first seen in the final resume's replay: live delivery missed them
    this.violations = []; // in-run protocol surprises (error answers)
  }

  conv(id) {
    let c = this.convs.get(id);
    if (!c) { c = new ConvView(); this.convs.set(id, c); }
    return c;
  }

  start() {
    const gw = this.world.pickGateway(this);
    if (this.transport === 'sio' || this.transport === 'sio-ws') {
      this.conn = new SioDriver(this, gw, this.transport === 'sio' ? ['polling', 'websocket'] : ['websocket']);
    } else {
      this.openConn(gw);
    }
  }

  openConn(gw) {
    this.connReady = false;
    this.connResumed = false;
    this.conn = this.transport === 'ws' ? new RawWsConn(this, gw) : new PollConn(this, gw);
  }

  // --- connection lifecycle ------------------------------------------------------------------

  onClosed(conn, info) {
    if (conn !== this.conn) return;
    this.closes[info.why] = (this.closes[info.why] || 0) + 1;
    this.connReady = false;
    this.connResumed = false;
    this.conn = null;
    if (!this.running) return;
    // Reconnect with a little jittered backoff, to either gateway.
    const delay = Math.min(2000, 50 * 2 ** Math.min(this.attempt++, 6)) * (0.5 + Math.random());
    setTimeout(() => { if (this.running && !this.conn) this.openConn(this.world.pickGateway(this)); }, delay);
  }

  onSioConnect(driver, recovered) {
    this.connSeq++;
    this.connReady = false;
    this.connResumed = false;
    this.sioRecovered = recovered;
    this.replayLeft = 0;
  }

  onSioDisconnect(driver, reason) {
    this.closes[reason] = (this.closes[reason] || 0) + 1;
    if (this.world.verbose) this.world.log(`${this.name} (${this.transport}) disconnected: ${reason} in phase ${this.world.phase}`);
    this.connReady = false;
    this.connResumed = false;
  }

  onFrame(conn, f) {
    switch (f.type) {
      case 'welcome': return this.onWelcome(conn, f);
      case 'message': return this.onMessage(conn, f.message);
      case 'conversation':
        if (f.conversation?.id) this.conv(f.conversation.id);
        return undefined;
      default: return undefined;
    }
  }

  async onWelcome(conn, w) {
    const sio = conn instanceof SioDriver;
    if (!sio && conn !== this.conn) return;
    const welcomedAt = Date.now();
    if (!sio) this.connSeq++;
    const connSeq = this.connSeq;
    const first = connSeq === 1;
    if (!first) this.reconnects++;
    this.attempt = 0;
    this.connReady = true;
    this.connGw = conn.gw;
    // Agents: conversations unknown at connection start are resumed only after list_conversations.
    this.knownAtStart = new Set(this.convs.keys());
    this.discovered = this.role !== 'agent';
    if (this.role === 'visitor') {
      if (w.visitor_token) {
        this.visitorToken = w.visitor_token;
        if (sio) conn.socket.auth = { site: 'default', token: w.visitor_token };
      }
      this.visitorId = w.visitor_id;
      if (w.conversation?.id) this.conv(w.conversation.id);
    }
    // Sends wait for the resume: a `send` would end the gateway's hold on live events before the
    // `resume` arrived (docs/protocol.md), and on polling the two POSTs are not ordered.
    try {
      if (sio && this.sioRecovered) {
        // The stock client's recovery: the gateway replayed from the offset before anything live.
        this.resumeDone(connSeq, first);
      } else {
        const cursors = {};
        for (const [id, c] of this.convs) cursors[id] = c.contiguous;
        if (this.role === 'agent') {
          // The session holds live events back until the first resume (docs/protocol.md): list
          // the conversations first, so that those created while away are resumed in the same
          // breath and nothing of theirs arrives live ahead of older messages.
          const list = await conn.request('list_conversations', { limit: 500 }, 10_000);
          if (connSeq !== this.connSeq) return;
          for (const c of list.conversations || []) {
            if (!(c.id in cursors) && c.last_seq > 0) { cursors[c.id] = 0; this.conv(c.id); }
          }
          this.knownAtStart = new Set(Object.keys(cursors));
        }
        // Always resume, even with nothing to resume: the gateway holds a new session's live
        // events back until its first resume or send (at most 1 s, docs/protocol.md).
        {
          // How long after `welcome` the resume went out (the gateway holds live events 1 s).
          this.world.resumeDelays.push(Date.now() - welcomedAt);
          const ack = await conn.request('resume', { cursors }, 10_000, (a) => {
            if (connSeq !== this.connSeq || a.error) return;
            this.replayLeft = a.replayed;
            this.resumeDone(connSeq, first);
          });
          if (ack.error) throw Object.assign(new Error(`resume refused: ${ack.error.code} ${ack.error.message}`), { code: ack.error.code });
        }
      }
      if (this.role === 'agent') {
        await this.discover(conn, connSeq);
        if (connSeq === this.connSeq) this.discovered = true;
      }
    } catch (e) {
      if (e.code !== 'disconnected' && e.code !== 'timeout') this.violations.push(`${this.name}: ${e.message}`);
      // A resume that timed out leaves the connection useless for the check: drop it.
      if (connSeq === this.connSeq && e.code === 'timeout' && !sio) conn.cut();
    }
  }

  resumeDone(connSeq, first) {
    this.connResumed = true;
    this.flushReady();
    this.resumes.push(Date.now());
    if (!first) this.recovered++;
  }

  /** Agents: conversations created while they were away are not in their cursors; list them. */
  async discover(conn, connSeq) {
    const ack = await conn.request('list_conversations', { limit: 500 }, 10_000);
    if (connSeq !== this.connSeq || ack.error) return;
    const fresh = {};
    for (const c of ack.conversations) {
      if (!this.knownAtStart.has(c.id) && c.last_seq > 0) fresh[c.id] = this.convs.get(c.id)?.contiguous ?? 0;
    }
    if (Object.keys(fresh).length === 0) return;
    for (const id of Object.keys(fresh)) this.conv(id);
    await conn.request('resume', { cursors: fresh }, 10_000, (r) => {
      if (connSeq !== this.connSeq || r.error) return;
      this.replayLeft += r.replayed;
      this.discovered = true;
    });
  }

  onMessage(conn, m) {
    if (!m || typeof m.seq !== 'number') return;
    const now = Date.now();
    const c = this.conv(m.conversation_id);
    const replay = this.replayLeft > 0;
    if (replay) this.replayLeft--;
    // Before the resume that covers this conversation was answered, an event is live traffic the
    // replay may repeat (the boundary race): flag it.
    const pre = !this.connResumed || (!this.discovered && !this.knownAtStart?.has(m.conversation_id));
    c.events.push([this.connSeq, m.seq, pre ? 1 : 0, replay ? 1 : 0]);
    const fresh = !c.seen.has(m.seq);
    if (fresh && this.finalResumeSent) this.finalFresh++;
    c.add(m.seq);
    this.world.observe(this, m, now, replay || !this.connResumed);
    if (fresh && this.role === 'agent' && m.sender?.role === 'visitor' && !replay) this.world.maybeReply(this, m);
  }

  // --- sending -------------------------------------------------------------------------------

  ready() {
    if (this.connReady && this.connResumed && this.conn && (!(this.conn instanceof SioDriver) || this.conn.socket.connected)) return Promise.resolve();
    return new Promise((r) => this.readyWaiters.push(r));
  }

  flushReady() {
    const w = this.readyWaiters;
    this.readyWaiters = [];
    for (const r of w) r();
  }

  /** Sends one message until it is acknowledged, retrying with the same client_msg_id. */
  async sendUntilAcked(cmid, body, conversationId, deadline) {
    const rec = { body, conv: conversationId, attempts: 0, acks: [], errors: [], firstAt: Date.now() };
    this.sent.set(cmid, rec);
    this.sendOrder.push(cmid);
    this.world.registerBody(cmid, body);
    while (Date.now() < deadline) {
      await Promise.race([this.ready(), new Promise((r) => setTimeout(r, 1000))]);
      if (!this.connReady || !this.connResumed || !this.conn) continue;
      rec.attempts++;
      if (rec.attempts > 1) this.retries++;
      this.world.attemptAt.set(cmid, Date.now());
      const fields = { body, client_msg_id: cmid };
      if (conversationId) fields.conversation_id = conversationId;
      let ans;
      try {
        ans = await this.conn.request('send', fields);
      } catch (e) {
        rec.errors.push(e.code || e.message);
        // Disconnected or timed out: retry, maybe on a new connection. A connection that is going
        // away rejects at once; do not spin on it.
        if (e.code !== 'timeout') await new Promise((r) => setTimeout(r, 100));
        continue;
      }
      if (ans.error) {
        rec.errors.push(ans.error.code);
        if (ans.error.code === 'unavailable' || ans.error.code === 'internal') { await new Promise((r) => setTimeout(r, 300)); continue; }
        this.violations.push(`${this.name} send ${cmid} refused: ${ans.error.code} ${ans.error.message}`);
        return rec;
      }
      const m = ans.message;
      rec.acks.push({ conv: m.conversation_id, seq: m.seq, duplicate: ans.duplicate, cmid: m.client_msg_id, body: m.body });
      this.conv(m.conversation_id);
      if (!rec.ackedAt) rec.ackedAt = Date.now();
      return rec;
    }
    return rec;
  }

  stall(ms) {
    if (!this.conn || !this.connReady || this.transport === 'sio' || this.transport === 'sio-ws') return false;
    if (!this.conn.stall(ms)) return false;
    this.stalls++;
    const now = Date.now();
    this.stalledUntil = now + ms;
    this.stallHistory.push([now, now + ms]);
    return true;
  }

  cut() {
    if (!this.conn) return false;
    this.conn.cut();
    return true;
  }

  /** At the end: resume once more on the live connection; anything replayed was missed live. */
  async finalResume() {
    await this.ready();
    const cursors = {};
    for (const [id, c] of this.convs) cursors[id] = c.contiguous;
    if (!Object.keys(cursors).length) { this.finalReplayed = 0; return; }
    const connSeq = this.connSeq;
    this.finalResumeSent = true;
    const ack = await this.conn.request('resume', { cursors }, 10_000, (a) => {
      if (connSeq === this.connSeq && !a.error) this.replayLeft += a.replayed;
    });
    if (ack.error) throw new Error(`${this.name}: final resume refused: ${ack.error.code}`);
    this.finalReplayed = ack.replayed;
    this.finalCursors = cursors;
  }

  stop() {
    this.running = false;
    if (this.conn) this.conn.close();
  }
}
