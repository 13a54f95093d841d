package postgres

import (
	"context"
	"strings"
	"testing"

	"stq/engine"
	"stq/store/postgres/pgtest"
	"stq/store/storetest"
)

// openSchema opens a store on schema, closed when the test ends.
func openSchema(t testing.TB, schema string) *Store {
	t.Helper()
	s, err := Open(context.Background(), Options{URL: testURL(t), Schema: schema, MaxConns: 8})
	if err != nil {
		t.Fatalf("open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) engine.Store {
		return openSchema(t, freshSchema(t))
	})
}

// TestConformanceOneByOne runs the suite with the pipelined cycle off:
// claims and cycles then go the one-statement-at-a-time way, which the
// pipelined one falls back to and must agree with.
func TestConformanceOneByOne(t *testing.T) {
	testURL(t)
	storetest.Run(t, func(t *testing.T) engine.Store {
		s := openSchema(t, freshSchema(t))
		s.oneByOne = true
		return s
	})
}

func testURL(t testing.TB) string { return pgtest.URL(t) }

// freshSchema returns a schema name no other test uses, dropped with
// everything in it when the test ends.
func freshSchema(t testing.TB) string { return pgtest.Schema(t, "stqtest_") }

func TestCheckVersion(t *testing.T) {
	for _, tt := range []struct {
		num     int
		version string
		ok      bool
	}{
		{110022, "11.22", false},
		{119999, "11.99", false},
		{120000, "12.0", true},
		{150018, "15.18 (Debian 15.18-0+deb12u1)", true},
		{180001, "18.1", true},
	} {
		err := checkVersion(tt.num, tt.version)
		if (err == nil) != tt.ok {
			t.Errorf("checkVersion(%d, %q) = %v, want ok %v", tt.num, tt.version, err, tt.ok)
		}
		if err != nil && !strings.Contains(err.Error(), "PostgreSQL "+tt.version+"; stq needs 12 or newer") {
			t.Errorf("checkVersion(%d): %q does not name the version and the need", tt.num, err)
		}
	}
}
