#!/usr/bin/env python3
"""Writes an upgrade fixture with the server of an earlier release.

The fixtures in e2e/tests/fixtures/upgrade/ are data written by the real earlier code, not by
today's types: this script drives a server binary built from a release commit over HTTP, the
way its users did, and saves what it wrote.

    git worktree add /tmp/rel c1e0ca8
    (cd /tmp/rel && cargo build --release --example server)
    python3 scripts/make_upgrade_fixture.py --server /tmp/rel/target/release/examples/server \
        --release c1e0ca8 --out e2e/tests/fixtures/upgrade/0001-c1e0ca8

It writes, for SQLite and for PostgreSQL (a scratch database on 127.0.0.1:5432, dumped with
pg_dump --inserts so that tests can restore it without psql):

- sqlite.db: the database file (checkpointed: no -wal file needed);
- postgres.sql: the pg_dump of the same story;
- manifest.json: what the release answered (users and passwords, orders with their statuses,
  product stock) and which confirmations must be delivered after an upgrade, and which never.

With --statements it writes, instead, sqlite.json and postgres.json: every SQL statement a
running replica of that release sends (sqlx's query log, while it serves every route), for
e2e/tests/upgrade.rs to prepare against the current schema: an old replica keeps working while a
new one has migrated beside it (a rolling update).

The story: two buyers and an admin register; some orders are placed and confirmed (mail into
files), one of them cancelled; then, with the dispatcher off, more orders are placed (their
confirmations pending) and one of those cancelled.
"""

import argparse
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import tempfile
import time
import urllib.error
import urllib.request

JWT_SECRET = "upgrade-fixture-secret-0123456789-abcdef"
USERS = [
    {"email": "alice@example.com", "password": "alice-password-1"},
    {"email": "bob@example.com", "password": "bob-password-22"},
    {"email": "admin@example.com", "password": "admin-password-333"},
]
SEED = [
    {"product_id": "product-1", "product_name": "Demo Product", "quantity": 10},
    {"product_id": "product-2", "product_name": "Second Product", "quantity": 5},
]
PG = "postgres://postgres@127.0.0.1:5432"
PG_DB = "upgrade_fixture"


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, binary, env, log):
        self.port = free_port()
        full = dict(os.environ)
        full.update(env)
        full.update({"HOST": "127.0.0.1", "PORT": str(self.port), "JWT_SECRET": JWT_SECRET,
                     "ADMIN_EMAILS": "admin@example.com",
                     "ADMIN_REQUIRES_VERIFIED_EMAIL": "false",
                     "SEED_PRODUCTS": json.dumps(SEED), "RUST_LOG": "info"})
        full.update(env)
        self.proc = subprocess.Popen([binary], env=full, stdout=log, stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                if self.call("GET", "/health")[0] == 200:
                    return
            except OSError:
                pass
            if self.proc.poll() is not None:
                raise SystemExit(f"server exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise SystemExit("server did not answer /health")

    def call(self, method, path, body=None, token=None):
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", method=method)
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            req.add_header("Content-Type", "application/json")
        if token:
            req.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(req, data, timeout=10) as r:
                return r.status, json.loads(r.read() or b"null")
        except urllib.error.HTTPError as e:
            return e.code, json.loads(e.read() or b"null")

    def ok(self, method, path, body=None, token=None):
        status, answer = self.call(method, path, body, token)
        if status >= 300:
            raise SystemExit(f"{method} {path}: {status} {answer}")
        return answer

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)


def story(binary, url, log, mail_dir):
    tokens, orders = {}, []

    def order(server, who, product, quantity):
        o = server.ok("POST", "/orders/place", {"product_id": product, "quantity": quantity},
                      tokens[who])
        orders.append({"order_id": o["order_id"], "owner": who})
        return o["order_id"]

    def wait_confirmed(server, order_id, who):
        for _ in range(200):
            if server.ok("GET", f"/orders/{order_id}", token=tokens[who])["status"] == "confirmed":
                return
            time.sleep(0.05)
        raise SystemExit(f"order {order_id} was not confirmed")

    # Phase 1: mail works (files), orders confirmed; one confirmed order cancelled.
    s = Server(binary, {"DATABASE_URL": url, "SMTP_MODE": "files", "MAIL_DIR": mail_dir}, log)
    for u in USERS:
        s.ok("POST", "/auth/register", u)
        tokens[u["email"]] = s.ok("POST", "/auth/login", u)["access_token"]
    a, b = USERS[0]["email"], USERS[1]["email"]
    first = order(s, a, "product-1", 2)
    second = order(s, a, "product-2", 1)
    third = order(s, b, "product-1", 1)
    for o, who in ((first, a), (second, a), (third, b)):
        wait_confirmed(s, o, who)
    s.ok("POST", f"/orders/{second}/cancel", {}, tokens[a])
    s.stop()

    # Phase 2: no dispatcher, so the confirmations stay pending; one such order cancelled.
    s = Server(binary, {"DATABASE_URL": url, "SMTP_MODE": "files", "MAIL_DIR": mail_dir,
                        "RUN_DISPATCHER": "false"}, log)
    for u in USERS:
        tokens[u["email"]] = s.ok("POST", "/auth/login", u)["access_token"]
    order(s, a, "product-2", 2)
    cancelled = order(s, b, "product-1", 3)
    order(s, b, "product-1", 1)
    s.ok("POST", f"/orders/{cancelled}/cancel", {}, tokens[b])

    # What the release answers now.
    for o in orders:
        got = s.ok("GET", f"/orders/{o['order_id']}", token=tokens[o["owner"]])
        o.update({"status": got["status"], "product_id": got["product_id"],
                  "quantity": got["quantity"]})
    products = {p["product_id"]: p["quantity"] for p in s.ok("GET", "/products")}
    s.stop()
    return orders, products


def replica_workload(binary, url, log, mail_dir):
    """What a running replica of the release does: every route a user or an admin calls, with
    the dispatcher delivering. Returns the SQL statements it ran (from sqlx's query log)."""
    start = os.path.getsize(log.name)
    s = Server(binary, {"DATABASE_URL": url, "SMTP_MODE": "files", "MAIL_DIR": mail_dir,
                        "RUST_LOG": "warn,sqlx::query=debug", "LOG_FORMAT": "json"}, log)
    tokens = {}
    for u in USERS:
        s.ok("POST", "/auth/register", u)
        tokens[u["email"]] = s.ok("POST", "/auth/login", u)["access_token"]
    a, admin = tokens[USERS[0]["email"]], tokens[USERS[2]["email"]]
    s.call("POST", "/auth/verify/request", {}, a)
    s.call("POST", "/auth/verify", {"token": "not-a-real-token"}, a)
    first = s.ok("POST", "/orders/place", {"product_id": "product-1", "quantity": 1}, a)
    keyed = {"product_id": "product-2", "quantity": 1}
    s.ok("POST", "/orders/place", keyed, a)
    for _ in range(200):
        if s.ok("GET", f"/orders/{first['order_id']}", token=a)["status"] == "confirmed":
            break
        time.sleep(0.05)
    s.ok("GET", "/orders", token=a)
    s.ok("GET", "/orders?all=true&limit=10&offset=0", token=admin)
    s.ok("POST", f"/orders/{first['order_id']}/cancel", {}, a)
    s.ok("POST", "/products", {"product_id": "product-9", "product_name": "Nine",
                               "quantity": 3}, admin)
    s.ok("POST", "/products/product-9/restock", {"quantity": 2}, admin)
    s.ok("GET", "/products/product-9")
    s.ok("GET", "/products")
    s.call("GET", "/ready")
    s.stop()
    with open(log.name) as f:
        f.seek(start)
        lines = f.read().splitlines()
    statements = set()
    for line in lines:
        try:
            event = json.loads(line)
        except ValueError:
            continue
        fields = event.get("fields", event)
        if event.get("target") != "sqlx::query":
            continue
        statement = fields.get("db.statement") or fields.get("dbStatement") or ""
        sql = statement.strip() or fields.get("summary", "")
        # The release's own migrations and transaction control depend on no table of ours.
        upper = sql.upper()
        schema_work = any(w in upper for w in ("_SQLX_MIGRATIONS", "PG_ADVISORY", "CREATE ",
                                               "ALTER ", "DROP ", "PRAGMA "))
        control = upper.split(" ")[0] in ("BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT", "RELEASE")
        if sql and not sql.endswith("…") and not schema_work and not control:
            statements.add(sql)
    return sorted(statements)


def statements_main(args, work, log):
    """--statements: the SQL a running replica of the release sends, for both databases."""
    db = os.path.join(work, "replica.db")
    out = {"sqlite": replica_workload(args.server, f"sqlite://{db}?mode=rwc", log,
                                      os.path.join(work, "mail-replica-sqlite"))}
    psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"{PG}/postgres"]
    subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"], check=True)
    subprocess.run(psql + ["-c", f"CREATE DATABASE {PG_DB}"], check=True)
    out["postgres"] = replica_workload(args.server, f"{PG}/{PG_DB}", log,
                                       os.path.join(work, "mail-replica-pg"))
    subprocess.run(psql + ["-c", f"DROP DATABASE {PG_DB} WITH (FORCE)"], check=True)
    for backend, statements in out.items():
        if len(statements) < 10:
            raise SystemExit(f"{backend}: only {len(statements)} statements captured")
        with open(os.path.join(args.out, f"{backend}.json"), "w") as f:
            json.dump({"release": args.release, "statements": statements}, f, indent=2)
            f.write("\n")


def manifest(release, version, orders, products, notifications):
    expect, never = [], []
    for o in orders:
        n = notifications.get(o["order_id"])
        if o["status"] != "cancelled" and n == "pending":
            expect.append(o["order_id"])
        else:
            never.append(o["order_id"])
    return {"release": release, "schema_version": version, "users": USERS,
            "products": products, "orders": orders,
            "notifications": notifications, "deliver_after_upgrade": expect,
            "never_send": never}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--server", required=True)
    ap.add_argument("--release", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--statements", action="store_true",
                    help="capture the SQL a running replica sends, instead of a database")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="upgrade-fixture-")
    log = open(os.path.join(work, "server.log"), "w")
    if args.statements:
        try:
            statements_main(args, work, log)
        finally:
            log.close()
        return
    try:
        # SQLite
        db = os.path.join(work, "inventory.db")
        orders, products = story(args.server, f"sqlite://{db}?mode=rwc", log,
                                 os.path.join(work, "mail-sqlite"))
        con = sqlite3.connect(db)
        con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        con.execute("PRAGMA journal_mode=DELETE")
        notes = dict(con.execute("SELECT order_id, status FROM notifications"))
        version = con.execute("SELECT max(version) FROM _sqlx_migrations").fetchone()[0]
        con.close()
        shutil.copy(db, os.path.join(args.out, "sqlite.db"))
        with open(os.path.join(args.out, "sqlite.manifest.json"), "w") as f:
            json.dump(manifest(args.release, version, orders, products, notes), f, indent=2)
            f.write("\n")

        # PostgreSQL: a scratch database of its own.
        psql = ["psql", "-X", "-q", "-v", "ON_ERROR_STOP=1", f"{PG}/postgres"]
        subprocess.run(psql + ["-c", f"DROP DATABASE IF EXISTS {PG_DB} WITH (FORCE)"], check=True)
        subprocess.run(psql + ["-c", f"CREATE DATABASE {PG_DB}"], check=True)
        orders, products = story(args.server, f"{PG}/{PG_DB}", log,
                                 os.path.join(work, "mail-pg"))
        rows = subprocess.run(["psql", "-X", "-At", "-F", " ", f"{PG}/{PG_DB}", "-c",
                               "SELECT order_id, status FROM notifications"],
                              check=True, capture_output=True, text=True).stdout
        notes = dict(line.split(" ") for line in rows.splitlines() if line)
        version = int(subprocess.run(["psql", "-X", "-At", f"{PG}/{PG_DB}", "-c",
                                      "SELECT max(version) FROM _sqlx_migrations"],
                                     check=True, capture_output=True, text=True).stdout)
        dump = subprocess.run(["pg_dump", "--no-owner", "--no-privileges", "--inserts",
                               "--schema=public", f"{PG}/{PG_DB}"],
                              check=True, capture_output=True, text=True).stdout
        with open(os.path.join(args.out, "postgres.sql"), "w") as f:
            f.write(dump)
        with open(os.path.join(args.out, "postgres.manifest.json"), "w") as f:
            json.dump(manifest(args.release, version, orders, products, notes), f, indent=2)
            f.write("\n")
        subprocess.run(psql + ["-c", f"DROP DATABASE {PG_DB} WITH (FORCE)"], check=True)
    finally:
        log.close()
        print(f"server log: {os.path.join(work, 'server.log')}")


if __name__ == "__main__":
    main()
