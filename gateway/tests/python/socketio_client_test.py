"""python-socketio (stock, from PyPI) against the real gateway: every transport, both roles.

Run: python3 gateway/tests/python/socketio_client_test.py [path/to/chat-gateway]
"""
import os
import socket
import subprocess
import sys
import tempfile
import time

import requests
import socketio

BIN = sys.argv[1] if len(sys.argv) > 1 else os.path.join(
    os.path.dirname(__file__), "..", "..", "..", "target", "debug", "chat-gateway")


# A real 1x1 PNG.
PNG = bytes.fromhex(
    "89504e470d0a1a0a0000000d4948445200000001000000010806000000"
    "1f15c4890000000d49444154789c63f8cfc0f01f0005000101ff89993d1d"
    "0000000049454e44ae426082")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main():
    port = free_port()
    data = tempfile.mkdtemp(prefix="chat-gateway-py-")
    env = dict(os.environ, CHAT_HTTP_LISTEN=f"127.0.0.1:{port}", CHAT_DATA_DIR=data,
               CHAT_ADMIN_JWT_SECRET="python-test-secret-0123456789",
               CHAT_METRICS_LISTEN=f"127.0.0.1:{free_port()}")
    gateway = subprocess.Popen([BIN], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 30
        for line in gateway.stdout:
            if line.startswith("SERVER_OK"):
                break
            if time.time() > deadline:
                raise SystemExit("no SERVER_OK within 30 s")
        base = f"http://127.0.0.1:{port}"
        token = subprocess.check_output([BIN, "token", "--agent", "py", "--name", "Py"], env=env, text=True).strip()

        agent = socketio.SimpleClient()
        agent.connect(base, socketio_path="ws-admin", auth={"token": token}, transports=["websocket"])
        event, welcome, *_ = agent.receive(timeout=10)
        assert event == "welcome" and welcome["agent"]["id"] == "py", (event, welcome)

        for transports in (["polling"], ["websocket"], ["polling", "websocket"]):
            visitor = socketio.SimpleClient()
            visitor.connect(base, socketio_path="ws-visitor", transports=transports)
            event, welcome, *_ = visitor.receive(timeout=10)
            assert event == "welcome" and welcome["agents_online"] == 1, (event, welcome)
            ack = visitor.call("send", {"body": "hello from python", "client_msg_id": "p1"}, timeout=10)
            assert ack["duplicate"] is False and ack["message"]["seq"] == 1, ack
            conversation = ack["message"]["conversation_id"]
            reply = agent.call("send", {"conversation_id": conversation, "body": "hi python"}, timeout=10)
            assert reply["message"]["seq"] == 2, reply
            while True:
                event, args, *_ = visitor.receive(timeout=10)
                if event == "message" and args["message"]["seq"] == 2:
                    assert args["message"]["body"] == "hi python"
                    break
            # An image: uploaded over HTTP with the visitor's token, sent by id, read by the agent.
            uploaded = requests.post(f"{base}/chat/api/attachments?name=py.png", data=PNG, timeout=10,
                                     headers={"Authorization": f"Bearer {welcome['visitor_token']}",
                                              "Content-Type": "image/png"})
            assert uploaded.status_code == 201, uploaded.text
            attachment = uploaded.json()["attachment"]
            ack = visitor.call("send", {"body": "", "attachment_id": attachment["id"]}, timeout=10)
            assert ack["message"]["attachment"] == attachment, ack
            while True:
                event, args, *_ = agent.receive(timeout=10)
                if event == "message" and args["message"].get("attachment") == attachment:
                    break
            got = requests.get(f"{base}/chat/api/attachments/{attachment['id']}", timeout=10,
                               headers={"Authorization": f"Bearer {token}"})
            assert got.status_code == 200 and got.content == PNG, got.status_code
            error = visitor.call("list_conversations", {}, timeout=10)
            assert error["error"]["code"] == "forbidden", error
            print(f"python-socketio {'+'.join(transports)}: ok")
            visitor.disconnect()

        refused = socketio.SimpleClient()
        try:
            refused.connect(base, socketio_path="ws-admin", auth={"token": "nope"}, transports=["polling"])
            raise SystemExit("a wrong agent token was accepted")
        except socketio.exceptions.ConnectionError as e:
            assert "failed to connect" in str(e), e  # CONNECT_ERROR; its text is checked in the Node tests
        print("python-socketio wrong token refused: ok")
        agent.disconnect()
    finally:
        gateway.kill()
        gateway.wait()


if __name__ == "__main__":
    main()
