package broker

import (
	"errors"
	"testing"
)

// A publish into a reject-publish queue that filled between its admission
// check and its push is nacked, whichever of the store and the push
// answers first; otherwise the store's answer stands.
func TestLateAdmission(t *testing.T) {
	storeErr := errors.New("store failed")
	for _, tc := range []struct {
		name        string
		storedFirst bool
		storeErr    error
		refused     bool
		want        error
	}{
		{"refused, store first", true, nil, true, errQueueFull},
		{"refused, push first", false, nil, true, errQueueFull},
		{"refused, store failed", true, storeErr, true, errQueueFull},
		{"taken", true, nil, false, nil},
		{"taken, push first", false, nil, false, nil},
		{"taken, store failed", false, storeErr, false, storeErr},
	} {
		calls := 0
		var got error
		a := &lateAdmission{done: func(err error) { calls++; got = err }}
		a.pending.Store(2)
		if tc.storedFirst {
			a.stored(tc.storeErr)
			a.pushed(tc.refused)
		} else {
			a.pushed(tc.refused)
			a.stored(tc.storeErr)
		}
		if calls != 1 || !errors.Is(got, tc.want) {
			t.Errorf("%s: done called %d times with %v, want once with %v", tc.name, calls, got, tc.want)
		}
	}
}
