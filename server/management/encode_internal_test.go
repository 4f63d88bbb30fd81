package management

import (
	"encoding/json"
	"math"
	"reflect"
	"testing"
	"time"
)

// appendJSON writes what encoding/json writes, decoded the same, for the
// values items hold (encoding/json also escapes <, > and &, which JSON
// does not need).
func TestAppendJSONMatchesEncodingJSON(t *testing.T) {
	v := []item{{
		"s": "a\"b\\c\n\x01<>&é\u2028", "bad": "\xff", "i": 3, "i64": int64(-4), "u": uint64(1 << 63),
		"f": 0.25, "big": 1e21, "whole": 2.0, "nan": math.NaN(), "t": true, "n": nil,
		"d": rate(1.5), "m": item{"z": 1, "a": []string{"x"}}, "l": []item{{"k": "v"}}, "e": item{}, "gc": gcStats{},
		"r":  sampled(span{10000, 5000}, time.UnixMilli(1700000002000), func(t int64) uint64 { return uint64(t / 1000) }),
		"r1": sampled(span{0, 5000}, time.UnixMilli(1700000002000), func(int64) uint64 { return 3 }),
	}}
	b, err := appendJSON(nil, v)
	if err != nil {
		t.Fatal(err)
	}
	var got, exp any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	v[0]["nan"] = 0 // encoding/json refuses NaN; we write 0
	ref, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(ref, &exp); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, exp) {
		t.Errorf("got %s\nwant %s", b, ref)
	}
	if b, _ := appendJSON(nil, item{"b": 1, "a": details{0}}); string(b) != `{"a":{"rate":0},"b":1}` {
		t.Errorf("key order or details: %s", b)
	}
}
