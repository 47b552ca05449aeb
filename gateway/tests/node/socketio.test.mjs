// Stock socket.io-client 4.x (from npm, pinned in package-lock.json) against the real gateway.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import WebSocket from 'ws';
import { createHmac } from 'node:crypto';
import { startGateway, once, sleep } from './harness.mjs';

const gateways = [];
after(async () => { for (const gw of gateways) await gw.stop(); });

async function gateway(env) {
  const gw = await startGateway(env);
  gateways.push(gw);
  return gw;
}

function visitor(gw, opts = {}) {
  return io(gw.base, { path: '/ws-visitor', reconnectionDelay: 200, reconnectionDelayMax: 1000, ...opts });
}

function agent(gw, token, opts = {}) {
  return io(gw.base, { path: '/ws-admin', auth: { token }, reconnectionDelay: 200, reconnectionDelayMax: 1000, ...opts });
}

/** Collects `message` events by (conversation, seq), failing on a duplicate. */
function recordMessages(socket) {
  const seen = [];
  socket.on('message', (payload, offset) => {
    assert.equal(typeof offset, 'string', 'every event carries a recovery offset');
    assert.ok(offset.length <= 64, `offsets have a constant bound: ${offset.length} characters`);
    seen.push(payload.message);
  });
  return seen;
}

function seqs(messages) {
  return messages.map((m) => m.seq);
}

for (const [label, visitorTransports, agentTransports] of [
  ['polling only', ['polling'], ['polling']],
  ['websocket only', ['websocket'], ['websocket']],
  ['polling upgraded to websocket', ['polling', 'websocket'], ['polling', 'websocket']],
]) {
  test(`visitor and agent chat over Socket.IO: ${label}`, async () => {
    const gw = await gateway();
    const token = await gw.token();
    const a = agent(gw, token, { transports: agentTransports });
    const [agentWelcome] = await once(a, 'welcome');
    assert.equal(agentWelcome.role, 'agent');
    assert.equal(agentWelcome.agent.name, 'Alice');

    const v = visitor(gw, { transports: visitorTransports });
    const [welcome] = await once(v, 'welcome');
    assert.equal(welcome.role, 'visitor');
    assert.equal(welcome.agents_online, 1);
    assert.ok(welcome.visitor_token);

    if (visitorTransports.length === 2) {
      if (v.io.engine.transport.name !== 'websocket') await once(v.io.engine, 'upgrade');
      assert.equal(v.io.engine.transport.name, 'websocket');
    }

    const agentSaw = once(a, 'message');
    const ack = await v.timeout(10_000).emitWithAck('send', { body: 'hello over socket.io', client_msg_id: 'v1' });
    assert.equal(ack.duplicate, false);
    assert.equal(ack.message.seq, 1);
    const conversation = ack.message.conversation_id;
    const [live] = await agentSaw;
    assert.equal(live.message.body, 'hello over socket.io');

    const visitorSaw = once(v, 'message', (p) => p.message.seq === 2);
    const reply = await a.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: 'hi from alice' });
    assert.equal(reply.message.seq, 2);
    const [got] = await visitorSaw;
    assert.equal(got.message.sender.name, 'Alice');

    // Retrying with the same client_msg_id returns the original.
    const retry = await v.timeout(10_000).emitWithAck('send', { body: 'hello over socket.io', client_msg_id: 'v1' });
    assert.equal(retry.duplicate, true);
    assert.equal(retry.message.seq, 1);

    const list = await a.timeout(10_000).emitWithAck('list_conversations', { status: 'open' });
    assert.equal(list.conversations[0].id, conversation);
    v.close();
    a.close();
  });
}

test('a raw WebSocket visitor and a Socket.IO agent chat, and the reverse', async () => {
  const gw = await gateway();
  const token = await gw.token();

  // Raw visitor, Socket.IO agent.
  const a = agent(gw, token);
  await once(a, 'welcome');
  const raw = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-visitor/`);
  const rawEvents = [];
  raw.on('message', (data) => rawEvents.push(JSON.parse(data.toString())));
  await once(raw, 'open');
  const agentSaw = once(a, 'message');
  raw.send(JSON.stringify({ type: 'send', id: 'r1', body: 'raw hello' }));
  const [live] = await agentSaw;
  const conversation = live.message.conversation_id;
  await a.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: 'socket.io reply' });
  for (let i = 0; i < 100 && !rawEvents.some((e) => e.type === 'message' && e.message.seq === 2); i++) await sleep(50);
  assert.ok(rawEvents.some((e) => e.type === 'message' && e.message.body === 'socket.io reply'));
  raw.close();
  a.close();

  // Socket.IO visitor, raw agent.
  const rawAgent = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-admin/?token=${token}`);
  const agentEvents = [];
  rawAgent.on('message', (data) => agentEvents.push(JSON.parse(data.toString())));
  await once(rawAgent, 'open');
  const v = visitor(gw);
  await once(v, 'welcome');
  const ack = await v.timeout(10_000).emitWithAck('send', { body: 'sio hello' });
  for (let i = 0; i < 100 && !agentEvents.some((e) => e.type === 'message' && e.message.body === 'sio hello'); i++) await sleep(50);
  assert.ok(agentEvents.some((e) => e.type === 'message' && e.message.body === 'sio hello'));
  const replied = once(v, 'message', (p) => p.message.body === 'raw reply');
  rawAgent.send(JSON.stringify({ type: 'send', id: 'a1', conversation_id: ack.message.conversation_id, body: 'raw reply' }));
  await replied;
  rawAgent.close();
  v.close();
});

test('bad input: unknown events, binary arguments and invalid fields get error acks; the socket stays up', async () => {
  const gw = await gateway();
  const v = visitor(gw);
  await once(v, 'welcome');
  const unknown = await v.timeout(10_000).emitWithAck('dance', {});
  assert.equal(unknown.error.code, 'unknown_type');
  const binary = await v.timeout(10_000).emitWithAck('send', { body: Buffer.from([1, 2, 3]) });
  assert.equal(binary.error.code, 'invalid_frame');
  const invalid = await v.timeout(10_000).emitWithAck('send', { nobody: true });
  assert.equal(invalid.error.code, 'invalid_frame');
  const forbidden = await v.timeout(10_000).emitWithAck('list_conversations', {});
  assert.equal(forbidden.error.code, 'forbidden');
  // Without an ack callback, errors arrive as an `error` event.
  const errorEvent = once(v, 'error');
  v.emit('send', { body: '' });
  const [err] = await errorEvent;
  assert.equal(err.code, 'bad_request');
  const ok = await v.timeout(10_000).emitWithAck('send', { body: 'still fine' });
  assert.equal(ok.message.seq, 1);
  v.close();
});

test('wrong token and wrong origin are refused', async () => {
  const gw = await gateway({ CHAT_ALLOWED_ORIGINS: 'https://shop.example' });
  const bad = agent(gw, 'not-a-jwt', { reconnection: false });
  const [err] = await once(bad, 'connect_error');
  assert.match(err.message, /agent token invalid/);
  bad.close();

  const forged = visitor(gw, { auth: { token: 'v1.x.default.AAAA' }, reconnection: false });
  const [err2] = await once(forged, 'connect_error');
  assert.match(err2.message, /visitor token rejected/);
  forged.close();

  const evil = visitor(gw, { extraHeaders: { Origin: 'https://evil.example' }, transports: ['polling'], reconnection: false });
  const [err3] = await once(evil, 'connect_error');
  assert.ok(err3, 'connect_error for a disallowed origin');
  evil.close();
  const res = await fetch(`${gw.base}/ws-visitor/?EIO=4&transport=polling`, { headers: { Origin: 'https://evil.example' } });
  assert.equal(res.status, 403);

  // An allowed origin gets credentialed CORS: the origin echoed, never `*`.
  const ok = await fetch(`${gw.base}/ws-visitor/?EIO=4&transport=polling`, { headers: { Origin: 'https://shop.example' } });
  assert.equal(ok.status, 200);
  assert.equal(ok.headers.get('access-control-allow-origin'), 'https://shop.example');
  assert.equal(ok.headers.get('access-control-allow-credentials'), 'true');
  const preflight = await fetch(`${gw.base}/ws-visitor/?EIO=4&transport=polling`, {
    method: 'OPTIONS',
    headers: { Origin: 'https://shop.example', 'Access-Control-Request-Method': 'POST', 'Access-Control-Request-Headers': 'content-type' },
  });
  assert.equal(preflight.status, 204);
  assert.equal(preflight.headers.get('access-control-allow-origin'), 'https://shop.example');

  const eio3 = await fetch(`${gw.base}/ws-visitor/?EIO=3&transport=polling`);
  assert.equal(eio3.status, 400);
  assert.deepEqual(await eio3.json(), { code: 5, message: 'Unsupported protocol version' });
});

/** An HS256 agent JWT signed with the gateway's secret, expiring in `ttlSecs`, with `extra` claims. */
function shortToken(gw, sub, ttlSecs, extra = {}) {
  const b64 = (v) => Buffer.from(JSON.stringify(v)).toString('base64url');
  const now = Math.floor(Date.now() / 1000);
  const input = `${b64({ alg: 'HS256', typ: 'JWT' })}.${b64({ sub, name: sub, iat: now, exp: now + ttlSecs, ...extra })}`;
  const sig = createHmac('sha256', gw.env.CHAT_ADMIN_JWT_SECRET).update(input).digest('base64url');
  return `${input}.${sig}`;
}

test('an agent token expiring ends the Socket.IO session with a server disconnect; auth renews it', async () => {
  const gw = await gateway();
  const a = agent(gw, shortToken(gw, 'alice', 2));
  await once(a, 'welcome');
  // Both may arrive in one polling payload: listen for both before waiting.
  const expired = once(a, 'error');
  const disconnected = once(a, 'disconnect');
  const [notice] = await expired;
  assert.equal(notice.code, 'token_expired');
  const [reason] = await disconnected;
  // A server-side disconnect: the stock client does not reconnect with the old token.
  assert.equal(reason, 'io server disconnect');
  await sleep(500);
  assert.equal(a.connected, false);
  a.close();

  // Room for a slow machine to renew before the first token expires.
  const b = agent(gw, shortToken(gw, 'bob', 5));
  await once(b, 'welcome');
  const renewed = await b.timeout(10_000).emitWithAck('auth', { token: shortToken(gw, 'bob', 600) });
  assert.ok(renewed.expires_at > Date.now() / 1000 + 500, JSON.stringify(renewed));
  await sleep(6500);
  assert.equal(b.connected, true);
  const list = await b.timeout(10_000).emitWithAck('list_conversations', {});
  assert.ok(Array.isArray(list.conversations), JSON.stringify(list));
  b.close();
});

test('recovery after a dropped connection: missed messages replayed, socket.recovered, no duplicates', async () => {
  const gw = await gateway();
  const token = await gw.token();
  const a = agent(gw, token);
  await once(a, 'welcome');
  const v = visitor(gw);
  const seen = recordMessages(v);
  await once(v, 'welcome');
  const first = await v.timeout(10_000).emitWithAck('send', { body: 'one', client_msg_id: 'one' });
  const conversation = first.message.conversation_id;
  for (let i = 0; i < 100 && seen.length < 1; i++) await sleep(20);

  // Drop the visitor's transport; while it is away, the agent writes twice.
  v.io.reconnection(false);
  const gone = once(v, 'disconnect');
  v.io.engine.close();
  await gone;
  await a.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: 'two' });
  await a.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: 'three' });
  v.io.reconnection(true);
  const back = once(v, 'connect');
  v.connect();
  await back;
  assert.equal(v.recovered, true, 'stock client reports a recovered session');
  for (let i = 0; i < 200 && seen.length < 3; i++) await sleep(20);
  await sleep(300);
  assert.deepEqual(seqs(seen), [1, 2, 3]);
  v.close();
  a.close();
});

test('recovery survives a gateway restart', async () => {
  const gw = await gateway();
  const token = await gw.token();
  const v = visitor(gw);
  const seen = recordMessages(v);
  await once(v, 'welcome');
  const first = await v.timeout(10_000).emitWithAck('send', { body: 'before restart' });
  const conversation = first.message.conversation_id;
  for (let i = 0; i < 100 && seen.length < 1; i++) await sleep(20);

  await gw.restart();
  // A raw agent writes right after the restart, racing the visitor's reconnect.
  const raw = new WebSocket(`ws://127.0.0.1:${gw.port}/ws-admin/?token=${token}`);
  await once(raw, 'open');
  for (const body of ['after restart 1', 'after restart 2']) {
    raw.send(JSON.stringify({ type: 'send', id: body, conversation_id: conversation, body }));
  }
  const reconnected = await once(v, 'connect', () => true, 20_000).then(() => true);
  assert.ok(reconnected);
  assert.equal(v.recovered, true, 'recovered across the restart');
  for (let i = 0; i < 200 && seen.length < 3; i++) await sleep(20);
  await sleep(300);
  assert.deepEqual(seqs(seen), [1, 2, 3]);
  raw.close();
  v.close();
});

test('an agent with many conversations: offsets stay under 64 characters, recovery is exact, and a restart declines it', async () => {
  const gw = await gateway();
  const token = await gw.token();
  const a = agent(gw, token);
  const seen = recordMessages(a);
  const offsets = [];
  a.on('message', (_payload, offset) => offsets.push(offset));
  await once(a, 'welcome');
  // Twelve visitors, one conversation each: more than an inline offset holds.
  const visitors = [];
  for (let i = 0; i < 12; i++) {
    const v = visitor(gw);
    await once(v, 'welcome');
    const { message } = await v.timeout(10_000).emitWithAck('send', { body: `hello ${i}`, client_msg_id: `h${i}` });
    visitors.push({ v, conversation: message.conversation_id });
  }
  for (let i = 0; i < 200 && seen.length < 12; i++) await sleep(20);
  assert.equal(seen.length, 12);
  assert.ok(offsets.at(-1).startsWith('r3.'), `a reference offset: ${offsets.at(-1)}`);

  // Cut the agent; every visitor writes twice while it is away; it comes back recovered.
  a.io.reconnection(false);
  const gone = once(a, 'disconnect');
  a.io.engine.close();
  await gone;
  for (const { v } of visitors) {
    for (const n of [2, 3]) await v.timeout(10_000).emitWithAck('send', { body: `again ${n}` });
  }
  a.io.reconnection(true);
  const back = once(a, 'connect');
  a.connect();
  await back;
  assert.equal(a.recovered, true, 'the reference offset recovered on the process that made it');
  for (let i = 0; i < 200 && seen.length < 36; i++) await sleep(20);
  await sleep(300);
  const byConversation = (list) => {
    const out = {};
    for (const m of list) (out[m.conversation_id] ??= []).push(m.seq);
    return out;
  };
  for (const { conversation } of visitors) {
    assert.deepEqual(byConversation(seen)[conversation], [1, 2, 3], 'each missed message once, in order');
  }

  // After a restart the track is gone: the recovery is declined, and the client is told so.
  const cursors = {};
  for (const m of seen) cursors[m.conversation_id] = Math.max(cursors[m.conversation_id] ?? 0, m.seq);
  const reconnected = [a, ...visitors.slice(0, 3).map(({ v }) => v)].map((s) => once(s, 'connect', () => true, 30_000));
  await gw.restart();
  await Promise.all(reconnected);
  assert.equal(a.recovered, false, 'a reference made before the restart is declined');
  for (const { v } of visitors.slice(0, 3)) await v.timeout(10_000).emitWithAck('send', { body: 'after restart' });
  // The client catches up itself, as docs/protocol.md says.
  const { replayed } = await a.timeout(10_000).emitWithAck('resume', { cursors });
  assert.equal(typeof replayed, 'number');
  for (let i = 0; i < 200 && seen.length < 39; i++) await sleep(20);
  await sleep(300);
  for (const { conversation } of visitors.slice(0, 3)) {
    assert.deepEqual(byConversation(seen)[conversation], [1, 2, 3, 4], 'nothing lost or repeated across the declined recovery');
  }
  for (const { v } of visitors) v.close();
  a.close();
});

test('sites as tenants over Socket.IO: an agent of one site neither lists, reads, writes nor receives another site\'s conversation', async () => {
  const gw = await gateway({ CHAT_SEND_RATE_PER_SEC: '0' });
  const v1 = visitor(gw, { auth: { site: 'shop1' }, transports: ['websocket'] });
  const v2 = visitor(gw, { auth: { site: 'shop2' }, transports: ['polling'] });
  await Promise.all([once(v1, 'welcome'), once(v2, 'welcome')]);
  const c1 = (await v1.emitWithAck('send', { body: 'shop1 here' })).message.conversation_id;
  const c2 = (await v2.emitWithAck('send', { body: 'shop2 here' })).message.conversation_id;

  const a = agent(gw, shortToken(gw, 'ann', 600, { sites: ['shop1'] }), { transports: ['websocket'] });
  const [welcome] = await once(a, 'welcome');
  assert.deepEqual(welcome.sites, ['shop1']);
  const received = recordMessages(a);
  const listed = (await a.emitWithAck('list_conversations', {})).conversations.map((c) => c.id);
  assert.ok(listed.includes(c1) && !listed.includes(c2), JSON.stringify(listed));
  for (const [event, args] of [
    ['list_conversations', { site: 'shop2' }],
    ['history', { conversation_id: c2 }],
    ['assign', { conversation_id: c2 }],
    ['close', { conversation_id: c2 }],
    ['send', { conversation_id: c2, body: 'not yours' }],
    ['resume', { cursors: { [c2]: 0 } }],
  ]) {
    const answer = await a.emitWithAck(event, args);
    assert.equal(answer.error?.code, 'forbidden', `${event}: ${JSON.stringify(answer)}`);
  }
  await v2.emitWithAck('send', { body: 'shop2 secret' });
  await v1.emitWithAck('send', { body: 'shop1 news' });
  const deadline = Date.now() + 10_000;
  while (!received.some((m) => m.body === 'shop1 news') && Date.now() < deadline) await sleep(50);
  assert.ok(received.some((m) => m.body === 'shop1 news'));
  assert.ok(received.every((m) => m.conversation_id !== c2), JSON.stringify(received));

  // An agent of both sites gets the other site's messages live.
  const both = agent(gw, shortToken(gw, 'bob', 600, { sites: ['shop1', 'shop2'] }), { transports: ['polling'] });
  await once(both, 'welcome');
  const bothReceived = recordMessages(both);
  await both.emitWithAck('resume', { cursors: {} });
  await v2.emitWithAck('send', { body: 'shop2 for bob' });
  const until = Date.now() + 10_000;
  while (!bothReceived.some((m) => m.body === 'shop2 for bob') && Date.now() < until) await sleep(50);
  assert.ok(bothReceived.some((m) => m.body === 'shop2 for bob'));
  for (const s of [v1, v2, a, both]) s.close();
});

test('a verified user over Socket.IO is the same visitor on two connections; a wrong hash is a connect_error', async () => {
  const secret = 'identity-secret-0123456789abcdef-0123';
  const gw = await gateway({ CHAT_IDENTITY_SECRET: secret });
  const hash = createHmac('sha256', secret).update('u42').digest('hex');
  const user = { id: 'u42', name: 'Ann', email: 'ann@example.com', hash };
  const phone = visitor(gw, { auth: { site: 'shop1', user }, transports: ['websocket'] });
  const [w1] = await once(phone, 'welcome');
  const sent = await phone.emitWithAck('send', { body: 'from the phone' });
  const laptop = visitor(gw, { auth: { site: 'shop1', user }, transports: ['polling'] });
  const [w2] = await once(laptop, 'welcome');
  assert.equal(w2.visitor_id, w1.visitor_id);
  assert.equal(w2.conversation.id, sent.message.conversation_id);

  const wrong = visitor(gw, { auth: { site: 'shop1', user: { ...user, hash: hash.replace(/^./, hash[0] === 'a' ? 'b' : 'a') } }, reconnection: false });
  const [err] = await once(wrong, 'connect_error');
  assert.match(err.message, /user hash does not match/);
  for (const s of [phone, laptop, wrong]) s.close();
});

test('search over Socket.IO: an agent finds a conversation by a word of its message, on its own site only', async () => {
  const gw = await gateway();
  const v1 = visitor(gw, { auth: { site: 'shop1' }, transports: ['websocket'] });
  const v2 = visitor(gw, { auth: { site: 'shop2' }, transports: ['polling'] });
  await Promise.all([once(v1, 'welcome'), once(v2, 'welcome')]);
  const c1 = (await v1.emitWithAck('send', { body: 'My parcel never arrived' })).message.conversation_id;
  await v1.emitWithAck('send', { body: 'hello again' });
  await v2.emitWithAck('send', { body: 'parcel on shop2' });

  for (const transports of [['websocket'], ['polling']]) {
    const a = agent(gw, shortToken(gw, 'ann', 600, { sites: ['shop1'] }), { transports });
    await once(a, 'welcome');
    const ack = await a.timeout(10_000).emitWithAck('search_conversations', { query: 'PARCEL "never"' });
    assert.equal(ack.results?.length, 1, JSON.stringify(ack));
    assert.equal(ack.results[0].conversation.id, c1);
    assert.equal(ack.results[0].seq, 1);
    assert.equal(ack.results[0].snippet, 'My parcel never arrived');
    const other = await a.timeout(10_000).emitWithAck('search_conversations', { query: 'parcel', site: 'shop2' });
    assert.equal(other.error?.code, 'forbidden', JSON.stringify(other));
    a.close();
  }
  v1.close();
  v2.close();
});
