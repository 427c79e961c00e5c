package tchannelmock

import (
	"context"
	"testing"
)

// StartT starts a mock for the test and registers its teardown with
// tb.Cleanup: when o.Verify is set and the test has not failed already, it
// verifies (a problem fails the test), then it stops the mock (an unclean stop
// fails the test too). A mock that cannot start ends the test with Fatal.
func StartT(tb testing.TB, o Options) *Mock {
	tb.Helper()
	m, err := Start(context.Background(), o)
	if err != nil {
		tb.Fatal(err)
		return nil
	}
	tb.Cleanup(func() {
		if m.verify != nil && !tb.Failed() {
			if err := m.Verify(context.Background(), *m.verify); err != nil {
				tb.Error(err)
			}
		}
		if err := m.Stop(); err != nil {
			tb.Error(err)
		}
	})
	return m
}

// VerifyT verifies now (see Verify) and fails the test with the mock's list
// of problems when there are any; the test goes on.
func (m *Mock) VerifyT(tb testing.TB, o VerifyOptions) {
	tb.Helper()
	if err := m.Verify(context.Background(), o); err != nil {
		tb.Error(err)
	}
}
