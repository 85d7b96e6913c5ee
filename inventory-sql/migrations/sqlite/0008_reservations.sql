-- Holds (reservations): units of a product held for a buyer during checkout are neither
-- available (`quantity`) nor sold: `reserved` counts them. A hold keeps its lines as JSON.
-- Expand-only: a column with a default and a new table.
ALTER TABLE products ADD COLUMN reserved INTEGER NOT NULL DEFAULT 0 CHECK (reserved >= 0);

CREATE TABLE reservations (
    id          TEXT PRIMARY KEY NOT NULL,
    user_id     TEXT NOT NULL,
    buyer_email TEXT NOT NULL,
    lines       TEXT NOT NULL,
    status      TEXT NOT NULL CHECK (status IN ('active', 'checked_out', 'released', 'expired')),
    expires_at  INTEGER NOT NULL,
    order_id    TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
) STRICT;
-- The sweep's query: active holds by expiry.
CREATE INDEX reservations_due ON reservations (expires_at) WHERE status = 'active';
