// Package migrate applies PulseBus's embedded schema migrations (package
// github.com/edupulse/pulsebus/sql) to a PostgreSQL database.
//
// Every run takes a transaction-scoped advisory lock first, so any number of
// migrators (a relay and a consumer starting together, several replicas) can
// run at once: one applies the pending versions, the others wait and then
// find nothing to do. All pending versions are applied in that one
// transaction, so a failure leaves the schema exactly as it was. Applied
// versions are recorded in pulsebus.schema_migrations.
//
// [Down] reverts, and it is careful about it: it never applies a migration
// (a target above the current version is an error), and it refuses to drop
// a table that still holds rows unless [DownOptions.Force]. The tables a
// down migration drops are read from its DROP TABLE statements; a comment
// line "-- settings, not data: schema.table" in the down file exempts a
// table of settings that its up migration recreates (pulsebus.limits).
package migrate
