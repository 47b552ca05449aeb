WITH c AS (
  INSERT INTO bench_conversations (id, visitor_id, last_seq) VALUES ($1::text::uuid, $1::text::uuid, 1)
  ON CONFLICT (id) DO UPDATE SET last_seq = bench_conversations.last_seq + 1, updated_at = now()
  RETURNING last_seq
)
INSERT INTO bench_messages (conversation_id, seq, sender_id, body, client_msg_id)
SELECT $1::text::uuid, c.last_seq, $1, $2, $3 FROM c
RETURNING seq, to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS created_at
