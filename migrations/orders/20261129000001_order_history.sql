-- An order's status history as the JSON array the API returns
-- ([{"status": ..., "at": ...}] in sequence order), defined once for every
-- query that reads orders. PL/pgSQL rather than SQL so its plan is cached per
-- connection instead of re-planned in every calling query.
CREATE FUNCTION order_history(p_order_id UUID) RETURNS JSON
LANGUAGE plpgsql STABLE AS $$
BEGIN
    RETURN (SELECT COALESCE(json_agg(json_build_object('status', h.status, 'at', h.at) ORDER BY h.seq), '[]'::json)
              FROM order_status_history h WHERE h.order_id = p_order_id);
END
$$;
