-- Events for other systems (webhooks, Pub/Sub). `events` is a queue: each change writes its
-- events in its own transaction, and the dispatcher's fan-out moves each event into one
-- delivery per destination (deleting it here), so nothing accumulates when no destination is
-- configured. A delivery carries its event's fields: destinations are few, and a delivery
-- is then read without a join. Expand-only: new tables.
CREATE TABLE events (
    id          TEXT PRIMARY KEY NOT NULL,
    type        TEXT NOT NULL,
    event_key   TEXT NOT NULL,
    occurred_at BIGINT NOT NULL,
    data        TEXT NOT NULL,
    traceparent TEXT
);

CREATE TABLE webhook_endpoints (
    id         TEXT PRIMARY KEY NOT NULL,
    url        TEXT NOT NULL,
    -- Event types, comma-separated.
    events     TEXT NOT NULL,
    -- Signing secrets (whsec_...), newest first, space-separated.
    secrets    TEXT NOT NULL,
    disabled   TEXT,
    created_at BIGINT NOT NULL
);

CREATE TABLE event_deliveries (
    id              TEXT PRIMARY KEY NOT NULL,
    event_id        TEXT NOT NULL,
    type            TEXT NOT NULL,
    event_key       TEXT NOT NULL,
    occurred_at     BIGINT NOT NULL,
    data            TEXT NOT NULL,
    traceparent     TEXT,
    destination     TEXT NOT NULL,
    status          TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'failed')),
    attempts        BIGINT NOT NULL DEFAULT 0,
    next_attempt_at BIGINT NOT NULL,
    last_error      TEXT,
    delivered_at    BIGINT,
    created_at      BIGINT NOT NULL,
    lease_owner     TEXT,
    lease_until     BIGINT,
    UNIQUE (event_id, destination)
);
-- The claim's query: a destination's due deliveries.
CREATE INDEX event_deliveries_due ON event_deliveries (destination, next_attempt_at) WHERE status = 'pending';
-- Listing by status (failed deliveries) in id order.
CREATE INDEX event_deliveries_status ON event_deliveries (status, id);
