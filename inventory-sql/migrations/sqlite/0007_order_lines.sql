-- Orders of several lines (baskets). The first line stays in `product_id` and `quantity`,
-- where every earlier release reads it; `lines` holds every line as JSON
-- (`[{"product_id": "...", "quantity": 2}, ...]`) when there is more than one, and is NULL for
-- a one-line order, which every existing order is. A confirmation keeps its lines alike
-- (with each product's name). Expand-only: columns with a NULL default, no data rewritten.
ALTER TABLE orders ADD COLUMN lines TEXT;
ALTER TABLE notifications ADD COLUMN lines TEXT;
