// Package schema holds PulseBus's database schema as numbered migrations,
// embedded in the binaries. It is the only place the schema is defined.
//
// The directory is sql/, where the .sql files sit beside it; the package is
// named schema so that it never shadows database/sql:
//
//	import "github.com/edupulse/pulsebus/sql" // package schema
//
// Each version N has a file NNNN_name.up.sql and NNNN_name.down.sql. The
// migrate package applies them in order under an advisory lock and records
// the applied versions in pulsebus.schema_migrations.
package schema

import "embed"

// Files holds the migration files, NNNN_name.up.sql and NNNN_name.down.sql.
//
//go:embed *.sql
var Files embed.FS
