-- The reference source schema (docs/source-data.md), portable: the same file migrates Postgres and SQLite.
-- `groups` is a reserved word, hence the prefix.
CREATE TABLE IF NOT EXISTS ranq_groups (
    id         BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP
);

CREATE TABLE IF NOT EXISTS ranq_scores (
    group_id   BIGINT NOT NULL REFERENCES ranq_groups(id) ON DELETE CASCADE,
    member_id  BIGINT NOT NULL,
    score      BIGINT NOT NULL,
    updated_at TIMESTAMP NOT NULL,
    PRIMARY KEY (group_id, member_id)
);

-- Covers the ranking order, so a group's top-100 is an index range scan that stops at 100 rows.
CREATE INDEX IF NOT EXISTS ranq_scores_ranking
    ON ranq_scores (group_id, score DESC, updated_at, member_id);
