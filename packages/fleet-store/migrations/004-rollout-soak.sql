-- gpu-canary fleet schema, version 4: a rollout's soak. After a host applies the promotion, the hosts
-- whose turn comes next wait this many seconds before they take it — time for the applied host's
-- daemon to see an out-of-memory event (KLR_APPLY_WATCH_HOURS) and pause the rollout first. 0, the
-- default and every rollout's before this version, does not wait.
ALTER TABLE rollouts ADD COLUMN soak_seconds integer NOT NULL DEFAULT 0 CHECK (soak_seconds >= 0);
