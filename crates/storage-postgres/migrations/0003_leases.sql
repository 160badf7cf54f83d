-- Leases: short claims that divide live work between the processes on one database (which
-- replica reconciles which shard). Liveness, not history: not on the chain, and each runs out
-- unless renewed. `expires_ms` is milliseconds since the Unix epoch by the database's clock, so
-- replicas whose clocks differ agree on when a lease has lapsed.
CREATE TABLE leases (
    name       TEXT PRIMARY KEY,
    holder     TEXT NOT NULL,
    process    TEXT,
    expires_ms BIGINT NOT NULL
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'r5e_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON leases TO r5e_app;
    END IF;
END
$$;
