package broker

import (
	"testing"
	"time"
)

// The bound is always durable before a delivery it covers, and the
// checkpoint interval (storage.offsetcheckpointinterval) sets how soon it
// adapts to the delivery rate.
func TestDeliveredBound(t *testing.T) {
	defs, err := openDefinitions(openBadger, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer defs.close()
	d := newDeliveredMark(defs, 0, 20*time.Millisecond, nil)
	defer d.close()

	if err := d.covered(100); err != nil {
		t.Fatal(err)
	}
	if got, _ := loadDelivered(defs); got < 100 {
		t.Fatalf("delivery of id 100 went out with a durable bound of %d", got)
	}
	// Deliveries race ahead by 10,000 ids; the next checkpoints raise the
	// bound ahead of that rate without waiting for a delivery to force it.
	if err := d.covered(10_000); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		got, err := loadDelivered(defs)
		if err != nil {
			t.Fatal(err)
		}
		if got >= 10_000+2*(10_000-100) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("bound %d never got the rate's headroom", got)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
