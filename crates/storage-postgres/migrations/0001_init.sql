-- r5e on Postgres: the event chain and the resource graph.

-- The chain. `body` holds the canonical bytes exactly as hashed (JSONB would reorder keys, so it
-- is never used for them); the other columns are copies kept for lookups.
CREATE TABLE events (
    seq     BIGINT PRIMARY KEY,
    type    TEXT   NOT NULL,
    subject TEXT   NOT NULL,
    hash    TEXT   NOT NULL,
    body    BYTEA  NOT NULL
);
CREATE INDEX events_by_type ON events (type, seq);
CREATE INDEX events_by_subject ON events (subject, seq);

-- The head of the chain, one row. Writers take its row lock to serialise on the chain, and a
-- writer that already knows the head appends with one conditional statement (see log.rs). It
-- is a cache of the last event, never read by verification.
CREATE TABLE chain_head (
    id   BOOLEAN PRIMARY KEY DEFAULT true CHECK (id),
    seq  BIGINT  NOT NULL,
    hash TEXT    NOT NULL
);
INSERT INTO chain_head (seq, hash) VALUES (0, 'sha256:0000000000000000000000000000000000000000000000000000000000000000');

-- Append-only, enforced by the database itself: no row may be updated or deleted, and the table
-- may not be truncated, whoever asks.
CREATE FUNCTION r5e_refuse_event_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'the event log is append-only: % on events is refused', TG_OP
        USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER events_append_only BEFORE UPDATE OR DELETE ON events
    FOR EACH ROW EXECUTE FUNCTION r5e_refuse_event_change();
CREATE TRIGGER events_no_truncate BEFORE TRUNCATE ON events
    FOR EACH STATEMENT EXECUTE FUNCTION r5e_refuse_event_change();

-- Current state of every resource. `labels` is a JSONB object with a GIN index that label
-- selectors use (`@>` for equality and sets, `?` for existence).
CREATE TABLE resources (
    kind             TEXT   NOT NULL,
    namespace        TEXT   NOT NULL,
    name             TEXT   NOT NULL,
    uid              TEXT   NOT NULL UNIQUE,
    resource_version BIGINT NOT NULL,
    labels           JSONB  NOT NULL DEFAULT '{}',
    body             JSONB  NOT NULL,
    PRIMARY KEY (kind, namespace, name)
);
CREATE INDEX resources_labels ON resources USING GIN (labels);

-- Typed edges (owner references and spec references), by name, for traversal.
CREATE TABLE edges (
    kind         TEXT NOT NULL,
    namespace    TEXT NOT NULL,
    name         TEXT NOT NULL,
    edge         TEXT NOT NULL,
    to_kind      TEXT NOT NULL,
    to_namespace TEXT NOT NULL,
    to_name      TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name, edge, to_kind, to_namespace, to_name)
);
CREATE INDEX edges_by_target ON edges (to_kind, to_namespace, to_name);

-- The application role: members may read everything, append events, and change resources, but
-- never update, delete or truncate events. Roles are cluster-wide; creating it needs CREATEROLE,
-- and without that privilege an operator creates it by hand (docs/operations/postgres.md).
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'r5e_app') THEN
        CREATE ROLE r5e_app NOLOGIN;
    END IF;
EXCEPTION
    WHEN insufficient_privilege THEN
        RAISE NOTICE 'cannot create role r5e_app: create it by hand and grant it as documented';
    WHEN duplicate_object OR unique_violation THEN
        NULL; -- created concurrently by another database's migration
END
$$;

DO $$
BEGIN
    IF EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'r5e_app') THEN
        EXECUTE format('GRANT USAGE ON SCHEMA %I TO r5e_app', current_schema());
        GRANT SELECT, INSERT ON events TO r5e_app;
        GRANT SELECT, UPDATE ON chain_head TO r5e_app;
        GRANT SELECT, INSERT, UPDATE, DELETE ON resources, edges TO r5e_app;
        GRANT SELECT ON _sqlx_migrations TO r5e_app;
    END IF;
END
$$;
REVOKE UPDATE, DELETE, TRUNCATE ON events FROM PUBLIC;
