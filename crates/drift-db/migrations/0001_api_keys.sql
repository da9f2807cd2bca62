-- API keys: only a hash of each key is kept; the key itself is shown once, at creation.
CREATE TABLE api_keys (
    id TEXT PRIMARY KEY,
    hash TEXT NOT NULL UNIQUE,
    tenant TEXT NOT NULL,
    client TEXT NOT NULL,
    user_name TEXT,
    scopes TEXT NOT NULL,
    description TEXT,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
