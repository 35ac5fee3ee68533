package sql_test

import (
	"testing"

	"github.com/edupulse/pulsebus/internal/testdb"
	"github.com/edupulse/pulsebus/internal/testmain"
)

func TestMain(m *testing.M) { testmain.Run(m, testdb.DropTemplate) }
