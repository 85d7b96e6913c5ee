-- A scratch table for the readiness probe's small committed write (nothing stays in it).
CREATE TABLE write_probe (
    id  BIGINT PRIMARY KEY,
    pad BYTEA
);
