-- The first release cancelled an order without touching its confirmation: one still pending
-- then would be sent after the upgrade, for an order the buyer cancelled. Release 2 cancels
-- them together (0002); this brings the older rows in line. Data only, expand-only.
UPDATE notifications
SET status = 'cancelled', lease_owner = NULL, lease_until = NULL
WHERE status = 'pending'
  AND order_id IN (SELECT id FROM orders WHERE status = 'cancelled');
