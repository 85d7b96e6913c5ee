-- A product's low-stock threshold (NULL: none): a change that takes its available stock from
-- above it to at or below it writes a `stock.low` event. Expand-only: a nullable column
-- that earlier releases never read.
ALTER TABLE products ADD COLUMN low_stock_threshold BIGINT CHECK (low_stock_threshold >= 0);
