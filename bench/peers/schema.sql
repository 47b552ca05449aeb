-- The peers' (Node, socketioxide) store for the benchmark harness: one conversation per visitor,
-- messages numbered per conversation like the gateway's. Applied to a fresh database per run.
CREATE TABLE bench_conversations (
    id uuid PRIMARY KEY,
    visitor_id uuid NOT NULL,
    last_seq bigint NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE bench_messages (
    id bigserial PRIMARY KEY,
    conversation_id uuid NOT NULL REFERENCES bench_conversations (id),
    seq bigint NOT NULL,
    sender_id text NOT NULL,
    body text NOT NULL,
    client_msg_id text,
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (conversation_id, seq)
);
