-- Address verification: users record whether they proved their address, and the outbox
-- carries verification emails besides order confirmations. SQLite cannot drop NOT NULL: the
-- notifications table is rebuilt (nothing references it).
ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;

CREATE TABLE notifications_new (
    id              TEXT PRIMARY KEY NOT NULL,
    kind            TEXT NOT NULL DEFAULT 'order_confirmation',
    order_id        TEXT REFERENCES orders (id),
    recipient       TEXT NOT NULL,
    product_id      TEXT,
    product_name    TEXT,
    quantity        INTEGER,
    user_id         TEXT REFERENCES users (id),
    code            TEXT,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'sent', 'failed', 'cancelled')),
    attempts        INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL,
    lease_owner     TEXT,
    lease_until     INTEGER,
    last_error      TEXT,
    created_at      INTEGER NOT NULL,
    sent_at         INTEGER,
    CONSTRAINT notifications_kind_check CHECK (
        (kind = 'order_confirmation' AND order_id IS NOT NULL AND product_id IS NOT NULL
            AND product_name IS NOT NULL AND quantity IS NOT NULL)
        OR (kind = 'email_verification' AND user_id IS NOT NULL AND code IS NOT NULL))
) STRICT;
INSERT INTO notifications_new (id, order_id, recipient, product_id, product_name, quantity,
    status, attempts, next_attempt_at, lease_owner, lease_until, last_error, created_at, sent_at)
SELECT id, order_id, recipient, product_id, product_name, quantity,
    status, attempts, next_attempt_at, lease_owner, lease_until, last_error, created_at, sent_at
FROM notifications;
DROP TABLE notifications;
ALTER TABLE notifications_new RENAME TO notifications;
CREATE UNIQUE INDEX notifications_by_order ON notifications (order_id);
CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX notifications_by_status ON notifications (status, id);
