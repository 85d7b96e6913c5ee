-- Carried by every token; raising it ends every token issued before (revocation).
ALTER TABLE users ADD COLUMN token_version INTEGER NOT NULL DEFAULT 0;
