-- hybrid-inference EDR store, migration 1 (run by the router at startup; see docs/fleet.md).
-- One row per EDR a replica shipped. record_text is the record's exact RFC 8785 canonical JSON, the
-- bytes its edr_hash covers, so `deno task verify --database` can check every hash; record is a jsonb
-- copy derived from it for queries. The other columns repeat fields of the record for indexes and
-- filters; verify checks that they agree with record_text.
CREATE TABLE IF NOT EXISTS edr_records (
  replica_id          text        NOT NULL,
  day                 date        NOT NULL,
  sequence            bigint      NOT NULL,
  request_id          text        NOT NULL,
  decision_core_hash  text        NOT NULL,
  prev_edr_hash       text,
  edr_hash            text        NOT NULL,
  created_at          timestamptz NOT NULL,
  endpoint            text        NOT NULL,
  provider            text,
  http_status         integer,
  outcome             text        NOT NULL,
  reason_code         text,
  classification      text,
  record_text         text        NOT NULL,
  record              jsonb       GENERATED ALWAYS AS (record_text::jsonb) STORED,
  shipped_at          timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT edr_records_idempotence UNIQUE (replica_id, decision_core_hash),
  CONSTRAINT edr_records_chain_position UNIQUE (replica_id, day, sequence)
);
CREATE INDEX IF NOT EXISTS edr_records_day_created ON edr_records (day, created_at DESC);
CREATE INDEX IF NOT EXISTS edr_records_request_id ON edr_records (request_id);

-- The checkpoint lines of each replica's days (checkpoints/YYYY-MM-DD.jsonl), shipped after the
-- records they count. line_text is the line as written, signature included.
CREATE TABLE IF NOT EXISTS edr_checkpoints (
  replica_id  text        NOT NULL,
  day         date        NOT NULL,
  sequence    bigint      NOT NULL,
  edr_hash    text        NOT NULL,
  at          text        NOT NULL,
  line_text   text        NOT NULL,
  shipped_at  timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT edr_checkpoints_idempotence UNIQUE (replica_id, day, at, sequence)
);
