-- r5e embedded store: the event chain and the resource graph in one SQLite file.

-- The chain. `body` holds the canonical bytes exactly as hashed; the other columns are copies
-- kept for lookups.
CREATE TABLE events (
    seq     INTEGER PRIMARY KEY,
    type    TEXT    NOT NULL,
    subject TEXT    NOT NULL,
    hash    TEXT    NOT NULL,
    body    BLOB    NOT NULL
);
CREATE INDEX events_by_type ON events (type, seq);
CREATE INDEX events_by_subject ON events (subject, seq);

-- Append-only, enforced by the database as well as by the absence of any code that could do
-- otherwise.
CREATE TRIGGER events_no_update BEFORE UPDATE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: events cannot be updated'); END;
CREATE TRIGGER events_no_delete BEFORE DELETE ON events
BEGIN SELECT RAISE(ABORT, 'the event log is append-only: events cannot be deleted'); END;

-- Current state of every resource.
CREATE TABLE resources (
    kind             TEXT    NOT NULL,
    namespace        TEXT    NOT NULL,
    name             TEXT    NOT NULL,
    uid              TEXT    NOT NULL UNIQUE,
    resource_version INTEGER NOT NULL,
    body             TEXT    NOT NULL,
    PRIMARY KEY (kind, namespace, name)
) WITHOUT ROWID;

-- Labels, one row per key, so that selectors are plain indexed SQL.
CREATE TABLE labels (
    kind      TEXT NOT NULL,
    namespace TEXT NOT NULL,
    name      TEXT NOT NULL,
    key       TEXT NOT NULL,
    value     TEXT NOT NULL,
    PRIMARY KEY (kind, namespace, name, key)
) WITHOUT ROWID;
CREATE INDEX labels_by_key_value ON labels (key, value);

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
) WITHOUT ROWID;
CREATE INDEX edges_by_target ON edges (to_kind, to_namespace, to_name);
