-- Optional: keep updated_at current on the reference catalog, so incremental
-- runs (sql/changed_release_keys.sql) see every change even when the
-- application forgets to set it. Idempotent; install with
--     psql "$DATABASE_URL" -f sql/catalog_triggers.sql
-- Installing it again replaces the functions and triggers of an older version
-- (how a catalog set up by an earlier ddex-etl gets the fixes below);
-- `etl config check --connect` says when the installed ones are out of date.
-- An UPDATE that sets updated_at itself to a different value keeps that value
-- (bulk loads and tests can backdate rows); any other UPDATE stamps now().
-- Deleting a release: set deleted_at (a soft delete), never DELETE the row,
-- or the takedown has nothing to be built from.
CREATE OR REPLACE FUNCTION ddex_etl_touch_updated_at() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
        NEW.updated_at := now();
    END IF;
    RETURN NEW;
END
$$;

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['labels', 'artists', 'releases', 'release_artists', 'tracks',
                               'track_contributors', 'deals', 'release_images']
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS ddex_etl_touch ON %I', tbl);
        EXECUTE format(
            'CREATE TRIGGER ddex_etl_touch BEFORE UPDATE ON %I '
            'FOR EACH ROW WHEN (OLD.* IS DISTINCT FROM NEW.*) EXECUTE FUNCTION ddex_etl_touch_updated_at()',
            tbl);
    END LOOP;
END
$$;

-- A deleted child row leaves nothing with a new updated_at behind: stamp its release.
CREATE OR REPLACE FUNCTION ddex_etl_touch_release() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'track_contributors' THEN
        UPDATE releases SET updated_at = now()
        WHERE release_id = (SELECT release_id FROM tracks WHERE track_id = OLD.track_id);
    ELSE
        UPDATE releases SET updated_at = now() WHERE release_id = OLD.release_id;
    END IF;
    RETURN OLD;
END
$$;

DO $$
DECLARE
    tbl text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['release_artists', 'tracks', 'track_contributors', 'deals', 'release_images']
    LOOP
        EXECUTE format('DROP TRIGGER IF EXISTS ddex_etl_touch_release ON %I', tbl);
        EXECUTE format(
            'CREATE TRIGGER ddex_etl_touch_release AFTER DELETE ON %I '
            'FOR EACH ROW EXECUTE FUNCTION ddex_etl_touch_release()', tbl);
    END LOOP;
END
$$;

-- A child row moved to another release (UPDATE tracks SET release_id = ...):
-- the new release sees the row's fresh updated_at, but the old one would keep
-- the moved track, credit or deal in its message (a moved deal stays on sale
-- at the store). Stamp both releases. track_contributors reach a release
-- through their track, so moving a credit to another track stamps the
-- releases of both tracks.
CREATE OR REPLACE FUNCTION ddex_etl_touch_moved() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'track_contributors' THEN
        UPDATE releases SET updated_at = now()
        WHERE release_id IN (SELECT release_id FROM tracks WHERE track_id IN (OLD.track_id, NEW.track_id));
    ELSE
        UPDATE releases SET updated_at = now() WHERE release_id IN (OLD.release_id, NEW.release_id);
    END IF;
    RETURN NULL;
END
$$;

DO $$
DECLARE
    tbl text;
    col text;
BEGIN
    FOREACH tbl IN ARRAY ARRAY['release_artists', 'tracks', 'track_contributors', 'deals', 'release_images']
    LOOP
        col := CASE WHEN tbl = 'track_contributors' THEN 'track_id' ELSE 'release_id' END;
        EXECUTE format('DROP TRIGGER IF EXISTS ddex_etl_touch_moved ON %I', tbl);
        EXECUTE format(
            'CREATE TRIGGER ddex_etl_touch_moved AFTER UPDATE ON %I '
            'FOR EACH ROW WHEN (OLD.%I IS DISTINCT FROM NEW.%I) EXECUTE FUNCTION ddex_etl_touch_moved()',
            tbl, col, col);
    END LOOP;
END
$$;
