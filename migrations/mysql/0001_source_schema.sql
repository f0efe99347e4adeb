-- The reference source schema for MySQL 8 and MariaDB 10.6+: the same tables, columns and ranking
-- index as ../0001_source_schema.sql (a test compares the two), in the types these servers need.
-- DATETIME(6) keeps microseconds and no time zone, as Postgres's TIMESTAMP does; the foreign key
-- is a table constraint because MySQL ignores a REFERENCES clause on a column.
CREATE TABLE IF NOT EXISTS ranq_groups (
    id         BIGINT PRIMARY KEY,
    name       TEXT NOT NULL,
    created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6)
) ENGINE = InnoDB;

CREATE TABLE IF NOT EXISTS ranq_scores (
    group_id   BIGINT NOT NULL,
    member_id  BIGINT NOT NULL,
    score      BIGINT NOT NULL,
    updated_at DATETIME(6) NOT NULL,
    PRIMARY KEY (group_id, member_id),
    -- Covers the ranking order, so a group's top-100 is an index range scan that stops at 100 rows.
    INDEX ranq_scores_ranking (group_id, score DESC, updated_at, member_id),
    CONSTRAINT ranq_scores_group FOREIGN KEY (group_id) REFERENCES ranq_groups (id) ON DELETE CASCADE
) ENGINE = InnoDB;
