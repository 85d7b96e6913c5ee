-- A scratch table for the readiness probe's small committed write (nothing stays in it).
CREATE TABLE write_probe (
    id  INTEGER PRIMARY KEY NOT NULL,
    pad BLOB
) STRICT;
