#!/usr/bin/env python3
"""The physical reference for SQLite order placement: a plain sqlite3 client, no HTTP, no sqlx.

One order = a conditional stock update + an order row + a notification row, on a WAL file in the
same temporary directory the load test uses, with the same tables and indexes as the service.
Prints orders/s for: one order per transaction with synchronous=NORMAL and FULL, and 64 orders
per transaction with FULL (group commit). Run: python3 e2e/benches/sqlite_reference.py [--seconds S]
"""
import argparse
import os
import sqlite3
import tempfile
import time
import uuid

SCHEMA = """
CREATE TABLE products (id TEXT PRIMARY KEY NOT NULL, name TEXT NOT NULL,
    quantity INTEGER NOT NULL CHECK (quantity >= 0), created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL) STRICT;
CREATE TABLE orders (id TEXT PRIMARY KEY NOT NULL, user_id TEXT NOT NULL, buyer_email TEXT NOT NULL,
    product_id TEXT NOT NULL REFERENCES products (id), quantity INTEGER NOT NULL,
    status TEXT NOT NULL, idempotency_key TEXT, created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL, UNIQUE (user_id, idempotency_key)) STRICT;
CREATE INDEX orders_by_user ON orders (user_id, id);
CREATE TABLE notifications (id TEXT PRIMARY KEY NOT NULL, kind TEXT NOT NULL DEFAULT 'order_confirmation',
    order_id TEXT REFERENCES orders (id), recipient TEXT NOT NULL, product_id TEXT,
    product_name TEXT, quantity INTEGER, status TEXT NOT NULL, attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt_at INTEGER NOT NULL, lease_owner TEXT, lease_until INTEGER, last_error TEXT,
    created_at INTEGER NOT NULL, sent_at INTEGER) STRICT;
CREATE UNIQUE INDEX notifications_by_order ON notifications (order_id);
CREATE INDEX notifications_due ON notifications (next_attempt_at, id) WHERE status = 'pending';
CREATE INDEX notifications_by_status ON notifications (status, id);
INSERT INTO products VALUES ('hot', 'Hot', 1000000000, 0, 0);
"""


def one_order(db, user, now):
    order_id, note_id = str(uuid.uuid4()), str(uuid.uuid4())
    row = db.execute(
        "UPDATE products SET quantity = quantity - 1, updated_at = ? "
        "WHERE id = 'hot' AND quantity >= 1 RETURNING name", (now,)).fetchone()
    assert row is not None
    db.execute(
        "INSERT INTO orders VALUES (?, ?, 'buyer@example.com', 'hot', 1, 'pending', NULL, ?, ?)",
        (order_id, user, now, now))
    db.execute(
        "INSERT INTO notifications (id, order_id, recipient, product_id, product_name, quantity, "
        "status, next_attempt_at, created_at) VALUES (?, ?, 'buyer@example.com', 'hot', ?, 1, "
        "'pending', ?, ?)", (note_id, order_id, row[0], now, now))


def measure(path, synchronous, per_transaction, seconds):
    if os.path.exists(path):
        os.remove(path)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute(f"PRAGMA synchronous={synchronous}")
    db.executescript(SCHEMA)
    user = str(uuid.uuid4())
    orders = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        db.execute("BEGIN IMMEDIATE")
        now = int(time.time() * 1e6)
        for _ in range(per_transaction):
            one_order(db, user, now)
        db.execute("COMMIT")
        orders += per_transaction
    elapsed = time.perf_counter() - start
    db.close()
    return orders / elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "reference.db")
        print("| plain sqlite3 (Python, SQLite %s), one hot product | orders/s |" % sqlite3.sqlite_version)
        print("|---|---|")
        for sync, per in (("NORMAL", 1), ("FULL", 1), ("FULL", 64)):
            rate = measure(path, sync, per, args.seconds)
            print(f"| synchronous={sync}, {per} order(s) per transaction | {rate:,.0f} |")


if __name__ == "__main__":
    main()
