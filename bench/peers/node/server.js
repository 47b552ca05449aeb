// The Node peer of the benchmark harness (bench/README.md), run behind Nginx: Express +
// socket.io 4.8 + pg doing the gateway's chat job, written generously. A visitor (no credentials)
// emits `send {body, client_msg_id}`; the message is stored with one prepared statement (one
// transaction), then acknowledged and delivered as a `message` event to every agent (auth
// `{token: JWT}`, HS256) and to the visitor. No recovery, no bus, no dedupe.
//
// Environment: PORT (listens on 127.0.0.1), DATABASE_URL, JWT_SECRET, POOL_SIZE (16).
"use strict";

const fs = require("fs");
const http = require("http");
const path = require("path");
const crypto = require("crypto");
const express = require("express");
const jwt = require("jsonwebtoken");
const { Pool } = require("pg");
const { Server } = require("socket.io");

const port = Number(process.env.PORT);
const secret = process.env.JWT_SECRET;
const sendSql = fs.readFileSync(path.join(__dirname, "..", "send.sql"), "utf8");
const MAX_BODY_CHARS = 4000;

const pool = new Pool({
  connectionString: process.env.DATABASE_URL,
  max: Number(process.env.POOL_SIZE || 16),
});
pool.on("error", (e) => console.error("postgres:", e.message));

const app = express();
app.get("/health", (_req, res) => res.send("ok"));
const server = http.createServer(app);
const io = new Server(server, { serveClient: false });

io.use((socket, next) => {
  const token = socket.handshake.auth && socket.handshake.auth.token;
  if (typeof token === "string") {
    try {
      const claims = jwt.verify(token, secret, { algorithms: ["HS256"] });
      socket.data.agent = { id: claims.sub, name: claims.name || claims.sub };
    } catch (e) {
      return next(new Error(`agent token invalid (${e.message})`));
    }
  } else {
    socket.data.visitor = crypto.randomUUID();
  }
  next();
});

io.on("connection", (socket) => {
  if (socket.data.agent) {
    socket.join("agents");
    socket.emit("welcome", { role: "agent", agent: socket.data.agent });
    return;
  }
  const visitor = socket.data.visitor;
  socket.join(visitor);
  socket.emit("welcome", { role: "visitor", visitor_id: visitor });
  socket.on("send", async (command, ack) => {
    const answer = typeof ack === "function" ? ack : () => {};
    const body = command && command.body;
    const clientMsgId = (command && command.client_msg_id) || null;
    if (typeof body !== "string" || body.length === 0 || [...body].length > MAX_BODY_CHARS) {
      answer({ error: { code: "bad_request", message: "body must have 1..=4000 characters" } });
      return;
    }
    let row;
    try {
      const result = await pool.query({ name: "send", text: sendSql, values: [visitor, body, clientMsgId] });
      row = result.rows[0];
    } catch (e) {
      console.error("store:", e.message);
      answer({ error: { code: "unavailable", message: "the store failed" } });
      return;
    }
    const message = {
      conversation_id: visitor,
      seq: Number(row.seq),
      client_msg_id: clientMsgId,
      sender: { role: "visitor", id: visitor, name: null },
      body,
      created_at: row.created_at,
    };
    answer({ message, duplicate: false });
    io.to(["agents", visitor]).emit("message", { message });
  });
});

server.listen(port, "127.0.0.1", () => console.log(`LISTENING port=${port}`));
