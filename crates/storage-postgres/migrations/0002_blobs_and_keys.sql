-- The content-addressed store on Postgres, for processes that share one database and no disk:
-- each blob under its digest (`sha256:<hex>`). The handle checks the digest on every read, so a
-- changed row is refused, never returned.
CREATE TABLE blobs (
    digest TEXT PRIMARY KEY,
    bytes  BYTEA NOT NULL
);

-- Keys every process of one deployment must share (the key that signs sessions' tokens), made
-- once by whichever process needs one first. Key material, not history: it is not on the chain.
CREATE TABLE keys (
    name       TEXT PRIMARY KEY,
    material   BYTEA NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT now()
);

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'r5e_app') THEN
        GRANT SELECT, INSERT, UPDATE, DELETE ON blobs TO r5e_app;
        GRANT SELECT, INSERT ON keys TO r5e_app;
    END IF;
END
$$;
