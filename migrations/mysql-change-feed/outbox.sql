-- Optional change feed (`ranq migrate --with-triggers`) for MySQL 8 and MariaDB 10.6+: every
-- change to a group's scores, and every group created or deleted, appends the group's id to
-- `ranq_outbox`. The leading producer in dirty mode drains it at each tick into dirty marks (and
-- deletes what it drained), so dirty mode works with no change to the application that writes the
-- scores, and a change made while no producer runs waits in the table. Rows are appended, never
-- updated, so the application's writes never wait on one another or on the drain here.
-- Idempotent: safe to apply again.

CREATE TABLE IF NOT EXISTS ranq_outbox (
    id       BIGINT AUTO_INCREMENT PRIMARY KEY,
    group_id BIGINT NOT NULL
) ENGINE = InnoDB;

DROP TRIGGER IF EXISTS ranq_scores_outbox_insert;
CREATE TRIGGER ranq_scores_outbox_insert AFTER INSERT ON ranq_scores FOR EACH ROW
    INSERT INTO ranq_outbox (group_id) VALUES (NEW.group_id);

-- An update that moves a row to another group changes both.
DROP TRIGGER IF EXISTS ranq_scores_outbox_update;
CREATE TRIGGER ranq_scores_outbox_update AFTER UPDATE ON ranq_scores FOR EACH ROW
    INSERT INTO ranq_outbox (group_id) SELECT NEW.group_id UNION SELECT OLD.group_id;

DROP TRIGGER IF EXISTS ranq_scores_outbox_delete;
CREATE TRIGGER ranq_scores_outbox_delete AFTER DELETE ON ranq_scores FOR EACH ROW
    INSERT INTO ranq_outbox (group_id) VALUES (OLD.group_id);

-- Deleting a group deletes its scores by cascade, which fires no trigger on ranq_scores: the
-- group's own trigger records it.
DROP TRIGGER IF EXISTS ranq_groups_outbox_insert;
CREATE TRIGGER ranq_groups_outbox_insert AFTER INSERT ON ranq_groups FOR EACH ROW
    INSERT INTO ranq_outbox (group_id) VALUES (NEW.id);

DROP TRIGGER IF EXISTS ranq_groups_outbox_delete;
CREATE TRIGGER ranq_groups_outbox_delete AFTER DELETE ON ranq_groups FOR EACH ROW
    INSERT INTO ranq_outbox (group_id) VALUES (OLD.id);
