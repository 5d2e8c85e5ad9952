-- The deals of one chunk's releases. The price columns are optional: read
-- through the row's JSON, so a catalog without them reads as no price.
SELECT d.release_id, d.deal_id, d.territories, d.commercial_model, d.use_types, d.start_date, d.end_date,
       d.updated_at, j.row ->> 'price_code' AS price_code, j.row ->> 'wholesale_price' AS wholesale_price,
       j.row ->> 'currency' AS currency
FROM deals d
CROSS JOIN LATERAL (SELECT to_jsonb(d) AS row) j
WHERE d.release_id = ANY (CAST(:release_ids AS bigint[]))
ORDER BY d.release_id, d.deal_id
