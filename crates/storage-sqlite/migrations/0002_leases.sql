-- Leases: short claims that divide live work between the processes on one file (which process
-- reconciles which shard). Liveness, not history: not on the chain, and each runs out unless
-- renewed. `expires_ms` is milliseconds since the Unix epoch.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    process    TEXT,
    expires_ms INTEGER NOT NULL
) STRICT;
