-- gpu-canary fleet schema, version 3: rollouts. A promotion proven on one host is applied to every
-- host of the fleet with the same fingerprint, `wave` hosts at a time, each by its own daemon in its
-- own maintenance window; the first host whose apply rolls back pauses the rollout.

CREATE TABLE rollouts (
  id text PRIMARY KEY,
  run_id text NOT NULL,
  from_host text NOT NULL,
  wave integer NOT NULL CHECK (wave > 0),
  state text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'paused', 'done')),
  -- the promotion's JSON as the proving host wrote it: what every host applies
  promotion jsonb NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  state_reason text
);
-- At most one running rollout of a promotion: two would assign its hosts twice.
CREATE UNIQUE INDEX rollouts_one_running ON rollouts (run_id) WHERE state = 'running';
CREATE INDEX rollouts_created_at ON rollouts (created_at);

-- Each host of a rollout, in the order it is worked. `assigned` and `refused` (a gate said not now:
-- the host tries again at its next window) hold a place in the wave; the others are settled.
CREATE TABLE rollout_hosts (
  rollout_id text NOT NULL REFERENCES rollouts (id) ON DELETE CASCADE,
  host_id text NOT NULL,
  position integer NOT NULL,
  state text NOT NULL CHECK (state IN ('pending', 'assigned', 'applied', 'rolled_back', 'failed', 'skipped', 'refused')),
  reason text,
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (rollout_id, host_id)
);
CREATE INDEX rollout_hosts_host ON rollout_hosts (host_id, state);
