-- The stock ledger: one append-only entry per change of a product's stock (delta of the
-- available and of the reserved units, the quantities after it, why, who, what for), written
-- in the same transaction as the change. Listed per product, newest first, by id (UUID v7).
-- `quantity` and `reserved` are NULL for entries imported from a store that could not know
-- them (a sharded product on Firestore). Expand-only: a new table.
CREATE TABLE stock_ledger (
    product_id     TEXT NOT NULL,
    id             TEXT NOT NULL,
    delta          BIGINT NOT NULL,
    reserved_delta BIGINT NOT NULL,
    quantity       BIGINT,
    reserved       BIGINT,
    reason         TEXT NOT NULL,
    actor          TEXT NOT NULL,
    reference      TEXT,
    at             BIGINT NOT NULL,
    PRIMARY KEY (product_id, id)
);

-- No other index: every entry costs the placing transaction one b-tree insert (retention
-- walks each product's entries by the primary key: ids are UUID v7, time first).

-- Every product that exists gets its opening entry: the stock it has as the ledger begins
-- (the nil UUID sorts before every entry written afterwards).
INSERT INTO stock_ledger (product_id, id, delta, reserved_delta, quantity, reserved, reason, actor, reference, at)
SELECT id, '00000000-0000-0000-0000-000000000000', quantity, reserved, quantity, reserved,
       'opening', 'system', NULL, updated_at
FROM products;
