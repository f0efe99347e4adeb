-- Optional change feed (`ranq migrate --with-triggers`, Postgres only): every change to a group's
-- scores, and every group created or deleted, is announced on channel `ranq_dirty` with the group
-- id as payload. A producer in dirty mode LISTENs and marks those groups dirty, so dirty mode works
-- with no change to the application that writes the scores. Postgres folds identical
-- notifications of one transaction into one, so a bulk update of a group costs one message.
-- Idempotent: safe to apply again.

CREATE OR REPLACE FUNCTION ranq_notify_score_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP <> 'INSERT' THEN
        PERFORM pg_notify('ranq_dirty', OLD.group_id::text);
    END IF;
    IF TG_OP <> 'DELETE' THEN
        PERFORM pg_notify('ranq_dirty', NEW.group_id::text);
    END IF;
    RETURN NULL;
END
$$;

CREATE OR REPLACE FUNCTION ranq_notify_group_change() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' THEN
        PERFORM pg_notify('ranq_dirty', OLD.id::text);
    ELSE
        PERFORM pg_notify('ranq_dirty', NEW.id::text);
    END IF;
    RETURN NULL;
END
$$;

DROP TRIGGER IF EXISTS ranq_scores_change_feed ON ranq_scores;
CREATE TRIGGER ranq_scores_change_feed
    AFTER INSERT OR UPDATE OR DELETE ON ranq_scores
    FOR EACH ROW EXECUTE FUNCTION ranq_notify_score_change();

DROP TRIGGER IF EXISTS ranq_groups_change_feed ON ranq_groups;
CREATE TRIGGER ranq_groups_change_feed
    AFTER INSERT OR DELETE ON ranq_groups
    FOR EACH ROW EXECUTE FUNCTION ranq_notify_group_change();
