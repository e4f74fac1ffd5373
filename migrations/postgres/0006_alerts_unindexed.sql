-- Nothing reads the alerts table by fingerprint (it is the record of what was received), and the
-- index cost every alert a write to a random page of it: in an alert storm, a 4 KB WAL frame per
-- alert. See docs/benchmarks.md, alert ingestion.
DROP INDEX alerts_by_fingerprint;
