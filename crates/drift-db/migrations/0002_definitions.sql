-- Workflow and node definitions. `kind` is 'workflow' or 'node'. A SNAPSHOT is the one
-- editable draft per definition; publishing copies it into an immutable numbered version
-- (rows of definition_versions are never updated); one version per definition is ACTIVE.
CREATE TABLE definition_snapshots (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    updated_by TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
CREATE TABLE definition_versions (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    body TEXT NOT NULL,
    published_by TEXT NOT NULL,
    published_at TEXT NOT NULL,
    PRIMARY KEY (kind, id, version)
);
CREATE TABLE definition_active (
    kind TEXT NOT NULL,
    id TEXT NOT NULL,
    version BIGINT NOT NULL,
    activated_by TEXT NOT NULL,
    activated_at TEXT NOT NULL,
    PRIMARY KEY (kind, id)
);
-- Bumped by every publish and activate, so a gateway can tell cheaply whether to reload.
CREATE TABLE definition_revision (
    id INTEGER PRIMARY KEY,
    revision BIGINT NOT NULL
);
INSERT INTO definition_revision (id, revision) VALUES (1, 0);
