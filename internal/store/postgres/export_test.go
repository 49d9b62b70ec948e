package postgres

// OpenTraced is Open with a pgx tracer, for tests that count statements.
var OpenTraced = open
