-- Optional change feed (`ranq migrate --with-triggers`) for SQLite: every change to a group's
-- scores, and every group created or deleted, appends the group's id to `ranq_outbox`. The leading
-- producer in dirty mode drains it at each tick into dirty marks (and deletes what it drained), so
-- dirty mode works with no change to the application that writes the scores, and a change made
-- while no producer runs waits in the table. Idempotent: safe to apply again.

CREATE TABLE IF NOT EXISTS ranq_outbox (
    id       INTEGER PRIMARY KEY AUTOINCREMENT,
    group_id BIGINT NOT NULL
);

CREATE TRIGGER IF NOT EXISTS ranq_scores_outbox_insert AFTER INSERT ON ranq_scores
BEGIN
    INSERT INTO ranq_outbox (group_id) VALUES (NEW.group_id);
END;

-- An update that moves a row to another group changes both.
CREATE TRIGGER IF NOT EXISTS ranq_scores_outbox_update AFTER UPDATE ON ranq_scores
BEGIN
    INSERT INTO ranq_outbox (group_id) SELECT NEW.group_id UNION SELECT OLD.group_id;
END;

CREATE TRIGGER IF NOT EXISTS ranq_scores_outbox_delete AFTER DELETE ON ranq_scores
BEGIN
    INSERT INTO ranq_outbox (group_id) VALUES (OLD.group_id);
END;

CREATE TRIGGER IF NOT EXISTS ranq_groups_outbox_insert AFTER INSERT ON ranq_groups
BEGIN
    INSERT INTO ranq_outbox (group_id) VALUES (NEW.id);
END;

CREATE TRIGGER IF NOT EXISTS ranq_groups_outbox_delete AFTER DELETE ON ranq_groups
BEGIN
    INSERT INTO ranq_outbox (group_id) VALUES (OLD.id);
END;
