// Stock socket.io-client 4.8.4 against socketio-example-server: namespaces / and /custom, both
// transports and the polling → WebSocket upgrade, auth echo, event echo, binary, acks both ways.
//
//   cargo build -p chat-transport-examples
//   cd transports/examples/tests/node && npm ci && npm test
//
// SERVER_BIN overrides the binary (default: target/debug/socketio-example-server).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { createInterface } from "node:readline";
import { fileURLToPath } from "node:url";
import path from "node:path";
import { io } from "socket.io-client";

const here = path.dirname(fileURLToPath(import.meta.url));
const bin =
  process.env.SERVER_BIN ??
  path.resolve(here, "../../../../target/debug/socketio-example-server");

let server;
let base;

before(async () => {
  server = spawn(bin, ["--listen", "127.0.0.1:0", "--ping-interval-ms", "300", "--ping-timeout-ms", "200"], {
    stdio: ["ignore", "pipe", "inherit"],
  });
  const line = await new Promise((resolve, reject) => {
    server.once("error", reject);
    server.once("exit", (code) => reject(new Error(`server exited with ${code}`)));
    createInterface({ input: server.stdout }).once("line", resolve);
  });
  base = line.replace("listening on ", "");
});

after(() => server?.kill());

const once = (socket, event) =>
  new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timeout waiting for ${event}`)), 5000);
    socket.once(event, (...args) => {
      clearTimeout(timer);
      resolve(args);
    });
  });

const bytes = (b) => [...Buffer.from(b)];

function connect(nsp, transports, auth = { token: "t-" + nsp }) {
  return io(base + nsp, { transports, auth, forceNew: true, reconnection: false });
}

for (const transports of [["polling"], ["websocket"], ["polling", "websocket"]]) {
  for (const nsp of ["/", "/custom"]) {
    test(`${nsp} over ${transports.join(" → ")}`, async () => {
      const socket = connect(nsp, transports);
      try {
        const [auth] = await once(socket, "auth");
        assert.deepEqual(auth, { token: "t-" + nsp });
        assert.ok(socket.connected);
        if (transports.length === 2 && socket.io.engine.transport.name !== "websocket") {
          await once(socket.io.engine, "upgrade");
        }
        assert.equal(socket.io.engine.transport.name, transports.at(-1));

        // Event echo, same name and args.
        const echoed = once(socket, "hello");
        socket.emit("hello", 1, "two", { three: [true] });
        assert.deepEqual(await echoed, [1, "two", { three: [true] }]);

        // The suite's message → message-back.
        const back = once(socket, "message-back");
        socket.emit("message", "x");
        assert.deepEqual(await back, ["x"]);

        // Binary echo (top-level and nested attachments).
        const bin = once(socket, "bin");
        socket.emit("bin", Buffer.from([1, 2, 3]), { nested: Buffer.from([4, 5]) });
        const [top, { nested }] = await bin;
        assert.deepEqual(bytes(top), [1, 2, 3]);
        assert.deepEqual(bytes(nested), [4, 5]);

        // Client → server ack: called back with the same args, binary included.
        const acked = await new Promise((resolve) =>
          socket.emit("message-with-ack", 1, "2", Buffer.from([7]), (...args) => resolve(args)),
        );
        assert.deepEqual(acked.slice(0, 2), [1, "2"]);
        assert.deepEqual(bytes(acked[2]), [7]);
        assert.deepEqual(await socket.timeout(5000).emitWithAck("echo-ack", "only"), "only");

        // Server → client ack: ask → question (ack) → answer with our ack's args.
        socket.once("question", (...args) => {
          const ack = args.pop();
          assert.deepEqual(args, ["q?"]);
          ack("yes", Buffer.from([9]));
        });
        const answer = once(socket, "answer");
        socket.emit("ask", "q?");
        const [yes, buf] = await answer;
        assert.equal(yes, "yes");
        assert.deepEqual(bytes(buf), [9]);
      } finally {
        socket.disconnect();
      }
    });
  }
}

test("unknown namespace is refused", async () => {
  const socket = connect("/nope", ["polling"]);
  try {
    const [err] = await once(socket, "connect_error");
    assert.equal(err.message, "Invalid namespace");
  } finally {
    socket.disconnect();
  }
});

test("heartbeat keeps an idle connection open (pingInterval 300 ms)", async () => {
  const socket = connect("/", ["websocket"]);
  try {
    await once(socket, "auth");
    let pings = 0;
    socket.io.engine.on("ping", () => pings++);
    await new Promise((r) => setTimeout(r, 1000));
    assert.ok(socket.connected);
    assert.ok(pings >= 2, `pings: ${pings}`);
  } finally {
    socket.disconnect();
  }
});
