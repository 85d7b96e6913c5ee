-- Address verification: users record whether they proved their address, and the outbox
-- carries verification emails besides order confirmations.
ALTER TABLE users ADD COLUMN email_verified BIGINT NOT NULL DEFAULT 0;

ALTER TABLE notifications
    ADD COLUMN kind TEXT NOT NULL DEFAULT 'order_confirmation',
    ADD COLUMN user_id TEXT REFERENCES users (id),
    ADD COLUMN code TEXT,
    ALTER COLUMN order_id DROP NOT NULL,
    ALTER COLUMN product_id DROP NOT NULL,
    ALTER COLUMN product_name DROP NOT NULL,
    ALTER COLUMN quantity DROP NOT NULL,
    ADD CONSTRAINT notifications_kind_check CHECK (
        (kind = 'order_confirmation' AND order_id IS NOT NULL AND product_id IS NOT NULL
            AND product_name IS NOT NULL AND quantity IS NOT NULL)
        OR (kind = 'email_verification' AND user_id IS NOT NULL AND code IS NOT NULL));
