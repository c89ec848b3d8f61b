-- gpu-canary fleet schema, version 1. Applied by `gpu-canary fleet init` in one transaction.

-- Every host that ever talked to the database, and when it last did.
CREATE TABLE hosts (
  host_id text PRIMARY KEY,
  last_seen timestamptz NOT NULL DEFAULT now(),
  info jsonb NOT NULL DEFAULT '{}'::jsonb
);

-- Per-host JSON documents behind the stores (budget/<YYYYMMDD>, rate-limits). A NULL doc is a
-- placeholder row taken for SELECT ... FOR UPDATE: the document is missing.
CREATE TABLE documents (
  host_id text NOT NULL,
  key text NOT NULL,
  doc jsonb,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (host_id, key)
);

-- Fleet maintenance slots: a row per held slot. Freed only by its run's end, its host's recovery
-- or an operator's forced release; never by time.
CREATE SEQUENCE fencing_token_seq;
CREATE TABLE slots (
  token bigint PRIMARY KEY DEFAULT nextval('fencing_token_seq'),
  host_id text NOT NULL,
  run_id text NOT NULL,
  acquired_at timestamptz NOT NULL DEFAULT now(),
  renewed_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (host_id, run_id)
);

-- The fleet-wide audit trail; each host also keeps its own JSONL.
CREATE TABLE audit (
  id bigserial PRIMARY KEY,
  host_id text NOT NULL,
  at timestamptz NOT NULL,
  record jsonb NOT NULL
);
CREATE INDEX audit_host_at ON audit (host_id, at);

-- Promotions proven on a host, fleet-wide.
CREATE TABLE promotions (
  run_id text PRIMARY KEY,
  host_id text NOT NULL,
  doc jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);

-- Intents (what a run means to change), fleet-wide.
CREATE TABLE intents (
  id text PRIMARY KEY,
  host_id text NOT NULL,
  doc jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
