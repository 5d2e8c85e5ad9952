-- The releases of one chunk (:release_ids, a bigint array) with their label
-- and front cover,
-- for the default table-by-table extract (ddex_etl/catalog_read.py). Every
-- query under sql/chunk/ runs in one REPEATABLE READ transaction, so the
-- pieces agree with each other.
SELECT r.release_id, r.icpn, r.grid, r.catalog_number, r.title, r.version_title, r.release_type, r.label_id,
       l.name AS label_name, l.dpid AS label_dpid, r.genre, r.subgenre, r.release_date, r.original_release_date,
       r.p_line_year, r.p_line_text, r.c_line_year, r.c_line_text, r.parental_warning, r.language,
       GREATEST(r.updated_at, l.updated_at, i.updated_at) AS changed_at, r.deleted_at,
       i.file AS cover_file, i.md5 AS cover_md5, i.width AS cover_width, i.height AS cover_height,
       i.mime_type AS cover_mime_type
FROM releases r
LEFT JOIN labels l ON l.label_id = r.label_id
LEFT JOIN release_images i ON i.release_id = r.release_id
WHERE r.release_id = ANY (CAST(:release_ids AS bigint[]))
ORDER BY r.release_id
