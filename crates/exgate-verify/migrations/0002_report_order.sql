-- Reports list line items by source, then destination: an index in that order lets the report
-- be read in order without sorting every row of a large project.
CREATE INDEX IF NOT EXISTS line_items_report_order ON line_items (project, source, destination, id);
