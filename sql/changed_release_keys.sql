-- Incremental sync: the next :limit release ids after :after among the
-- releases that changed in the window (:since, :until].
-- Parameters: :since, :until (timestamptz; the run's frozen watermarks),
-- :after (bigint; the last id of the previous chunk, or the smallest bigint),
-- :limit (integer).
-- A release counts as changed when it, one of its tracks, a track's
-- contributor row, an artist it credits (on the release or a track), its
-- label, a release_artists row, its cover image or a deal has updated_at in
-- the window; when
-- it was deleted (deleted_at) in the window; or when its last deal ended in
-- the window (every deal has an end_date and the latest one falls in
-- [:since::date, :until::date)): those two become takedowns.
-- The window is frozen, so the set is the same on every page and on a resume:
-- keyset paging over it neither skips nor repeats a release.
-- Each branch is an index range scan on updated_at (see catalog.sql), so the
-- cost follows what changed, not the catalog's size.
WITH changed AS (
    SELECT r.release_id FROM releases r
    WHERE r.updated_at > :since AND r.updated_at <= :until
    UNION
    SELECT r.release_id FROM releases r
    WHERE r.deleted_at > :since AND r.deleted_at <= :until
    UNION
    SELECT r.release_id FROM releases r
    JOIN labels l ON l.label_id = r.label_id
    WHERE l.updated_at > :since AND l.updated_at <= :until
    UNION
    SELECT ra.release_id FROM release_artists ra
    WHERE ra.updated_at > :since AND ra.updated_at <= :until
    UNION
    SELECT ra.release_id FROM release_artists ra
    JOIN artists a ON a.artist_id = ra.artist_id
    WHERE a.updated_at > :since AND a.updated_at <= :until
    UNION
    SELECT t.release_id FROM tracks t
    WHERE t.updated_at > :since AND t.updated_at <= :until
    UNION
    SELECT t.release_id FROM track_contributors tc
    JOIN tracks t ON t.track_id = tc.track_id
    WHERE tc.updated_at > :since AND tc.updated_at <= :until
    UNION
    SELECT t.release_id FROM track_contributors tc
    JOIN artists a ON a.artist_id = tc.artist_id
    JOIN tracks t ON t.track_id = tc.track_id
    WHERE a.updated_at > :since AND a.updated_at <= :until
    UNION
    SELECT d.release_id FROM deals d
    WHERE d.updated_at > :since AND d.updated_at <= :until
    UNION
    SELECT i.release_id FROM release_images i
    WHERE i.updated_at > :since AND i.updated_at <= :until
    UNION
    SELECT e.release_id FROM deals e
    WHERE e.end_date >= CAST(:since AS timestamptz)::date AND e.end_date < CAST(:until AS timestamptz)::date
      AND NOT EXISTS (
          SELECT 1 FROM deals o
          WHERE o.release_id = e.release_id AND (o.end_date IS NULL OR o.end_date > e.end_date)
      )
)
SELECT release_id
FROM changed
WHERE release_id > :after
ORDER BY release_id
LIMIT :limit
