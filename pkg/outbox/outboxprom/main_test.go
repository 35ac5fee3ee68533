package outboxprom_test

import (
	"testing"

	"github.com/edupulse/pulsebus/internal/testing/testdb"
	"github.com/edupulse/pulsebus/internal/testing/testmain"
)

func TestMain(m *testing.M) { testmain.Run(m, testdb.DropTemplate) }
