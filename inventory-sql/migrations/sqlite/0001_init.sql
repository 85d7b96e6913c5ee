-- Times are microseconds since the Unix epoch (INTEGER); ids are text (UUID or caller-chosen).
CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    email         TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    role          TEXT NOT NULL CHECK (role IN ('customer', 'admin')),
    created_at    INTEGER NOT NULL,
    CONSTRAINT users_email_key UNIQUE (email)
) STRICT;

CREATE TABLE products (
    id         TEXT PRIMARY KEY NOT NULL,
    name       TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity >= 0),
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
) STRICT;

CREATE TABLE orders (
    id              TEXT PRIMARY KEY NOT NULL,
    user_id         TEXT NOT NULL REFERENCES users (id),
    buyer_email     TEXT NOT NULL,
    product_id      TEXT NOT NULL REFERENCES products (id),
    quantity        INTEGER NOT NULL CHECK (quantity >= 1),
    status          TEXT NOT NULL CHECK (status IN ('pending', 'confirmed', 'cancelled')),
    idempotency_key TEXT,
    created_at      INTEGER NOT NULL,
    updated_at      INTEGER NOT NULL,
    CONSTRAINT orders_idempotency_key UNIQUE (user_id, idempotency_key)
) STRICT;
CREATE INDEX orders_by_user ON orders (user_id, id);

CREATE TABLE notifications (
    id              TEXT PRIMARY KEY NOT NULL,
    order_id        TEXT NOT NULL REFERENCES orders (id),
    recipient       TEXT NOT NULL,
    product_id      TEXT NOT NULL,
    product_name    TEXT NOT NULL,
    quantity        INTEGER NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER
) STRICT;
CREATE UNIQUE INDEX notifications_by_order ON notifications (order_id);
-- Claiming due work reads only this small partial index.
CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX notifications_by_status ON notifications (status, id);
