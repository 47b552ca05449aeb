// Issue 15, attachments over Socket.IO with the stock socket.io-client: an image uploaded over
// HTTP with the visitor's own token and sent with `attachment_id` reaches the agent with its
// `attachment`, the bytes are served to the participants only, and a file the agent sends while
// the visitor is away arrives with its attachment through connection-state recovery.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { io } from 'socket.io-client';
import { startGateway, once, sleep } from './harness.mjs';

const gateways = [];
after(async () => { for (const gw of gateways) await gw.stop(); });

// A real 1×1 PNG.
const PNG = Buffer.from('iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg==', 'base64');

async function upload(gw, token, query, type, bytes) {
  const response = await fetch(`${gw.base}/chat/api/attachments${query}`, {
    method: 'POST',
    headers: { Authorization: `Bearer ${token}`, 'Content-Type': type },
    body: bytes,
  });
  return { status: response.status, body: await response.json() };
}

async function download(gw, token, id) {
  const response = await fetch(`${gw.base}/chat/api/attachments/${id}`, {
    headers: { Authorization: `Bearer ${token}` },
  });
  return { status: response.status, type: response.headers.get('content-type'), bytes: Buffer.from(await response.arrayBuffer()) };
}

async function waitFor(check, what) {
  for (let i = 0; i < 250; i++) {
    if (check()) return;
    await sleep(20);
  }
  assert.fail(`timed out waiting for ${what}`);
}

for (const transports of [['websocket'], ['polling']]) {
  test(`an image and a file travel over Socket.IO, live and by recovery (${transports[0]})`, async () => {
    const gw = await startGateway();
    gateways.push(gw);
    const agentToken = await gw.token('alice', 'Alice');
    const agent = io(gw.base, { path: '/ws-admin', auth: { token: agentToken }, transports });
    const agentMessages = [];
    agent.on('message', (p) => agentMessages.push(p.message));
    await once(agent, 'welcome');

    const v = io(gw.base, { path: '/ws-visitor', transports, reconnectionDelay: 200, reconnectionDelayMax: 1000 });
    const seen = [];
    v.on('message', (p) => seen.push(p.message));
    const [welcome] = await once(v, 'welcome');
    assert.equal(welcome.uploads.max_bytes, 5 * 1024 * 1024, JSON.stringify(welcome));
    const token = welcome.visitor_token;

    const up = await upload(gw, token, '?name=photo.png', 'image/png', PNG);
    assert.equal(up.status, 201, JSON.stringify(up.body));
    const attachment = up.body.attachment;
    assert.deepEqual(
      { name: attachment.name, content_type: attachment.content_type, size: attachment.size },
      { name: 'photo.png', content_type: 'image/png', size: PNG.length },
    );
    const ack = await v.timeout(10_000).emitWithAck('send', { body: '', attachment_id: attachment.id, client_msg_id: 'img' });
    assert.deepEqual(ack.message.attachment, attachment, JSON.stringify(ack));
    const conversation = ack.message.conversation_id;
    await waitFor(() => agentMessages.some((m) => m.client_msg_id === 'img'), 'the image at the agent');
    assert.deepEqual(agentMessages.find((m) => m.client_msg_id === 'img').attachment, attachment);
    const got = await download(gw, agentToken, attachment.id);
    assert.equal(got.status, 200);
    assert.equal(got.type, 'image/png');
    assert.ok(got.bytes.equals(PNG), 'the agent reads the same bytes');

    // A stranger reads nothing.
    const stranger = io(gw.base, { path: '/ws-visitor', transports });
    const [strangerWelcome] = await once(stranger, 'welcome');
    assert.equal((await download(gw, strangerWelcome.visitor_token, attachment.id)).status, 404);
    stranger.close();

    // Away: the agent sends a text file; recovery brings it with its attachment.
    v.io.reconnection(false);
    const gone = once(v, 'disconnect');
    v.io.engine.close();
    await gone;
    const file = await upload(gw, agentToken, `?name=notes.txt&conversation_id=${conversation}`, 'text/plain', Buffer.from('step 1, step 2'));
    assert.equal(file.status, 201, JSON.stringify(file.body));
    await agent.timeout(10_000).emitWithAck('send', { conversation_id: conversation, body: 'the steps', attachment_id: file.body.attachment.id });
    v.io.reconnection(true);
    const back = once(v, 'connect');
    v.connect();
    await back;
    assert.equal(v.recovered, true, 'the stock client recovered its session');
    await waitFor(() => seen.some((m) => m.seq === 2), 'the file sent while away');
    assert.deepEqual(seen.find((m) => m.seq === 2).attachment, file.body.attachment);
    const text = await download(gw, token, file.body.attachment.id);
    assert.equal(text.bytes.toString(), 'step 1, step 2');
    v.close();
    agent.close();
  });
}
