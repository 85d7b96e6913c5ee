-- Retention (expand-only: indexes). The dispatcher's sweep expires idempotency keys and prunes
-- the outbox's done rows oldest first, a bounded batch at a time; each of these partial
-- indexes holds exactly the rows a sweep may still remove, so a sweep reads only what it
-- deletes, whatever the size of the tables.
CREATE INDEX orders_keyed ON orders (created_at) WHERE idempotency_key IS NOT NULL;
CREATE INDEX notifications_done ON notifications (created_at) WHERE status IN ('sent', 'cancelled');
CREATE INDEX event_deliveries_done ON event_deliveries (created_at) WHERE status = 'delivered';
