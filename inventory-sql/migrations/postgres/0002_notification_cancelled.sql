-- A notification whose order was cancelled before it was sent is 'cancelled': never sent,
-- never retried.
ALTER TABLE notifications DROP CONSTRAINT IF EXISTS notifications_status_check;
ALTER TABLE notifications ADD CONSTRAINT notifications_status_check
    CHECK (status IN ('pending', 'sent', 'failed', 'cancelled'));
