package bench

import (
	"context"
	"os"
	"testing"
)

// TestMain lets the test binary stand in for perftest when a test's run
// re-executes it as a child process (--producer-processes,
// --consumer-processes set PERFTEST_CHILD=1).
func TestMain(m *testing.M) {
	if os.Getenv("PERFTEST_CHILD") == "1" {
		os.Exit(Main(context.Background(), append([]string{"perftest"}, os.Args[1:]...), os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}
