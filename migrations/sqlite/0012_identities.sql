-- Keep in step with migrations/postgres/0012_identities.sql.

-- One person's accounts on each surface (Slack, Linear, GitHub), linked by a verified email or
-- by a code the person redeemed (`/chime link`). person_id groups them.
CREATE TABLE identities (
    surface TEXT NOT NULL,
    user_id TEXT NOT NULL,
    person_id TEXT NOT NULL,
    how TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    PRIMARY KEY (surface, user_id)
);
CREATE INDEX identities_person ON identities (person_id);

-- One-time codes that link an account to whoever redeems them on another surface.
CREATE TABLE link_codes (
    code TEXT PRIMARY KEY,
    surface TEXT NOT NULL,
    user_id TEXT NOT NULL,
    expires_at BIGINT NOT NULL
);

-- What Linear told about the people in its webhooks: how to name them, and their verified email
-- (for linking by email).
CREATE TABLE linear_users (
    user_id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT,
    updated_at BIGINT NOT NULL
);
