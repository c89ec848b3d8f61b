-- gpu-canary fleet schema, version 2: the fleet-wide audit trail holds each host's JSONL lines
-- exactly once. A line is named by its host, its day file (`gpu_canary_YYYYMMDD.jsonl`) and its
-- line number in that file, so copying a host's files again never duplicates a line.

ALTER TABLE audit ADD COLUMN day text, ADD COLUMN line_no integer;
-- No version writes the table before this one; rows put there by hand keep a name of their own.
UPDATE audit SET day = to_char(at AT TIME ZONE 'UTC', 'YYYYMMDD'), line_no = -id::integer;
ALTER TABLE audit
  ALTER COLUMN day SET NOT NULL,
  ALTER COLUMN line_no SET NOT NULL,
  ADD CONSTRAINT audit_day_format CHECK (day ~ '^[0-9]{8}$'),
  ADD CONSTRAINT audit_line UNIQUE (host_id, day, line_no);

-- The fleet's trail read in time order across hosts.
CREATE INDEX audit_at ON audit (at);
