-- The trace context of the order-created event a shipment came from, so the
-- scheduler's steps and their status events join the order's trace.
ALTER TABLE shipments ADD COLUMN traceparent TEXT, ADD COLUMN tracestate TEXT;
