package amqp

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"
)

// TestFieldValueWireTypes decodes hand-built bytes for every type tag and
// checks the Go type and value (the same mapping as amqp091-go's read.go),
// then re-encodes and expects the same bytes.
func TestFieldValueWireTypes(t *testing.T) {
	tests := []struct {
		name string
		wire string
		want any
	}{
		{"bool true", "74 01", true},
		{"bool false", "74 00", false},
		{"int8", "62 FF", int8(-1)},
		{"uint8", "42 FF", uint8(255)},
		{"int16", "73 FF FE", int16(-2)},
		{"uint16", "75 FF FE", uint16(65534)},
		{"int32", "49 FF FF FF FD", int32(-3)},
		{"uint32", "69 FF FF FF FD", uint32(0xFFFFFFFD)},
		{"int64", "6C FF FF FF FF FF FF FF FC", int64(-4)},
		{"float32", "66 3F C0 00 00", float32(1.5)},
		{"float64", "64 40 09 21 FB 54 44 2D 18", math.Pi},
		{"decimal", "44 02 FF FF FF 85", Decimal{Scale: 2, Value: -123}},
		{"longstr", "53 00 00 00 03 61 62 63", "abc"},
		{"empty longstr", "53 00 00 00 00", ""},
		{"bytes", "78 00 00 00 02 00 FF", []byte{0, 0xFF}},
		{"empty bytes", "78 00 00 00 00", []byte{}},
		{"timestamp", "54 00 00 00 00 65 53 F1 00", time.Unix(1700000000, 0).UTC()},
		{"void", "56", nil},
		{"array", "41 00 00 00 08 49 00 00 00 01 74 01 56", []any{int32(1), true, nil}},
		{"empty array", "41 00 00 00 00", []any(nil)},
		{"nested array", "41 00000009 41 00000004 4207 4208", []any{[]any{uint8(7), uint8(8)}}},
		{"table", "46 00 00 00 07 01 6B 53 00 00 00 00", Table{"k": ""}},
		{"empty table", "46 00 00 00 00", Table(nil)},
		{"nested table", "46 0000000A 0161 46 00000003 0162 56", Table{"a": Table{"b": nil}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := unhex(t, tt.wire)
			got, n, err := ReadFieldValue(append(bytes.Clone(wire), 0xEE)) // trailing byte must not be consumed
			if err != nil {
				t.Fatal(err)
			}
			if n != len(wire) {
				t.Errorf("consumed %d, want %d", n, len(wire))
			}
			if reflect.TypeOf(got) != reflect.TypeOf(tt.want) || !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %#v (%T), want %#v (%T)", got, got, tt.want, tt.want)
			}
			if enc := AppendFieldValue(nil, got); !bytes.Equal(enc, wire) {
				t.Errorf("re-encoded %x, want %x", enc, wire)
			}
			if n, err := skipFieldValue(wire, 0); err != nil || n != len(wire) {
				t.Errorf("skipFieldValue = %d, %v", n, err)
			}
		})
	}
}

func TestNonCanonicalBool(t *testing.T) {
	v, n, err := ReadFieldValue([]byte{'t', 7})
	if err != nil || n != 2 || v != true {
		t.Errorf("got %v %d %v", v, n, err)
	}
}

func TestAppendFieldValueGoTypes(t *testing.T) {
	tests := []struct {
		in   any
		wire string
	}{
		{int(7), "49 00000007"},
		{int(-7), "49 FFFFFFF9"},
		{int(math.MaxInt32), "49 7FFFFFFF"},
		{int(math.MaxInt32 + 1), "6C 0000000080000000"},
		{int(math.MinInt32 - 1), "6C FFFFFFFF7FFFFFFF"},
		{int64(7), "6C 0000000000000007"},
		{map[string]any{"a": nil}, "46 00000003 01 61 56"},
		{time.Date(2023, 11, 14, 23, 13, 20, 999, time.FixedZone("x", 3600)), "54 000000006553F100"},
		{[]any{}, "41 00000000"},
		{Table{}, "46 00000000"},
	}
	for _, tt := range tests {
		if got := AppendFieldValue(nil, tt.in); !bytes.Equal(got, unhex(t, tt.wire)) {
			t.Errorf("%T %v: got %x want %s", tt.in, tt.in, got, tt.wire)
		}
	}
}

func TestAppendFieldValueUnsupportedPanics(t *testing.T) {
	for _, v := range []any{uint64(1), uint(1), struct{}{}, []string{"a"}, map[string]string{}, complex(1, 2)} {
		func() {
			defer func() {
				r := recover()
				if r == nil {
					t.Errorf("%T: no panic", v)
				} else if s, _ := r.(string); !strings.Contains(s, "cannot encode") {
					t.Errorf("%T: panic %v", v, r)
				}
			}()
			AppendFieldValue(nil, v)
		}()
		if err := ValidateTable(Table{"k": Table{"x": []any{v}}}); err == nil {
			t.Errorf("ValidateTable accepted %T", v)
		}
	}
}

func TestTableRoundTripAllTypes(t *testing.T) {
	in := Table{
		"bool":    true,
		"int8":    int8(-8),
		"uint8":   uint8(8),
		"int16":   int16(-16),
		"uint16":  uint16(16),
		"int32":   int32(-32),
		"uint32":  uint32(32),
		"int64":   int64(-64),
		"float32": float32(3.25),
		"float64": 6.5,
		"decimal": Decimal{Scale: 3, Value: 12345},
		"string":  "héllo",
		"bytes":   []byte{1, 2, 3},
		"time":    time.Unix(1234567890, 0).UTC(),
		"void":    nil,
		"array":   []any{"a", int32(1), Table{"x": int64(2)}, []any{false}},
		"table":   Table{"nested": Table{"deep": "yes"}},
		"":        "empty key",
	}
	if err := ValidateTable(in); err != nil {
		t.Fatal(err)
	}
	enc := AppendTable(nil, in)
	out, n, err := ReadTable(enc)
	if err != nil {
		t.Fatal(err)
	}
	if n != len(enc) {
		t.Errorf("consumed %d of %d", n, len(enc))
	}
	if !reflect.DeepEqual(in, out) {
		t.Errorf("round trip:\n got %#v\nwant %#v", out, in)
	}
	// Deterministic: encoding again gives identical bytes.
	for i := 0; i < 5; i++ {
		if again := AppendTable(nil, out); !bytes.Equal(again, enc) {
			t.Fatal("encoding not deterministic")
		}
	}
	if sn, err := skipTable(enc, 0); err != nil || sn != n {
		t.Errorf("skipTable = %d, %v", sn, err)
	}
}

func TestTableSortedKeys(t *testing.T) {
	got := AppendTable(nil, Table{"b": nil, "a": nil, "c": nil})
	if want := unhex(t, "00000009 0161 56 0162 56 0163 56"); !bytes.Equal(got, want) {
		t.Errorf("got %x want %x", got, want)
	}
	arr := AppendArray(nil, []any{"x", uint8(1)})
	if want := unhex(t, "00000008 53 00000001 78 42 01"); !bytes.Equal(arr, want) {
		t.Errorf("array got %x want %x", arr, want)
	}
	a, n, err := ReadArray(arr)
	if err != nil || n != len(arr) || !reflect.DeepEqual(a, []any{"x", uint8(1)}) {
		t.Errorf("ReadArray = %#v %d %v", a, n, err)
	}
}

func TestTableMalformed(t *testing.T) {
	tests := []struct {
		name string
		wire string
	}{
		{"empty", ""},
		{"short length", "0000 00"},
		{"length beyond input", "00000005 0161 56"},
		{"huge length", "FFFFFFFF 0161 56"},
		{"key beyond table", "00000002 0561"},
		{"missing value", "00000002 0161"},
		{"unknown type", "00000003 0161 5A"},
		{"truncated int32", "00000004 0161 4900"},
		{"truncated decimal", "00000007 0161 44 02 000000"},
		{"truncated longstr length", "00000005 0161 53 0000"},
		{"longstr beyond table", "00000008 0161 53 00000005 61 6262"},
		{"huge longstr", "00000007 0161 53 FFFFFFFF"},
		{"huge bytes", "00000007 0161 78 FFFFFFF0"},
		{"array beyond table", "00000007 0161 41 00000009"},
		{"array with bad element", "00000008 0161 41 00000001 5A"},
		{"nested table beyond", "00000007 0161 46 00000001"},
		{"value crosses table end", "00000004 0161 4900 00000000 00"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			wire := unhex(t, tt.wire)
			tab, n, err := ReadTable(wire)
			var de *DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("ReadTable = %v %d %v, want *DecodeError", tab, n, err)
			}
			if tab != nil || n != 0 {
				t.Errorf("returned %v, %d with error", tab, n)
			}
			if _, err := skipTable(wire, 0); err == nil {
				t.Error("skipTable accepted it")
			}
		})
	}
}

func TestTableDepthLimit(t *testing.T) {
	nest := func(depth int, tag byte) []byte {
		// depth levels of nested 'F' (or 'A') values inside one table.
		inner := []byte{0, 0, 0, 0}
		for i := 0; i < depth; i++ {
			var b []byte
			if tag == 'F' {
				b = append([]byte{1, 'k', 'F'}, inner...)
			} else {
				b = append([]byte{'A'}, inner...)
			}
			outer := append([]byte{0, 0, 0, 0}, b...)
			outer[0], outer[1], outer[2], outer[3] = byte(len(b)>>24), byte(len(b)>>16), byte(len(b)>>8), byte(len(b))
			inner = outer
		}
		if tag == 'A' { // wrap the arrays in a table
			b := append([]byte{1, 'k', 'A'}, inner...)
			return append(binary.BigEndian.AppendUint32(nil, uint32(len(b))), b...)
		}
		return inner
	}
	if _, _, err := ReadTable(nest(MaxTableDepth, 'F')); err != nil {
		t.Errorf("depth %d rejected: %v", MaxTableDepth, err)
	}
	if _, _, err := ReadTable(nest(MaxTableDepth+1, 'F')); err == nil {
		t.Errorf("depth %d accepted", MaxTableDepth+1)
	}
	if _, _, err := ReadTable(nest(MaxTableDepth-1, 'A')); err != nil {
		t.Errorf("array depth %d rejected: %v", MaxTableDepth, err)
	}
	if _, _, err := ReadTable(nest(MaxTableDepth+2, 'A')); err == nil {
		t.Errorf("array depth %d accepted", MaxTableDepth+2)
	}
	if _, err := skipTable(nest(MaxTableDepth+1, 'F'), 0); err == nil {
		t.Errorf("skipTable: depth %d accepted", MaxTableDepth+1)
	}
	if _, _, err := ReadTable(nest(8*MaxTableDepth, 'F')); err == nil {
		t.Error("deep nesting accepted")
	}
	if _, _, err := ReadTable(nest(8*MaxTableDepth, 'A')); err == nil {
		t.Error("deep array nesting accepted")
	}
}

func TestValidateTable(t *testing.T) {
	if err := ValidateTable(Table{strings.Repeat("k", 256): 1}); err == nil {
		t.Error("256-byte key accepted")
	}
	if err := ValidateTable(Table{strings.Repeat("k", 255): map[string]any{"a": []any{int(1)}}}); err != nil {
		t.Error(err)
	}
	deep := Table{}
	cur := deep
	for i := 0; i < MaxTableDepth+2; i++ {
		next := Table{}
		cur["n"] = next
		cur = next
	}
	if err := ValidateTable(deep); err == nil {
		t.Error("over-deep table accepted")
	}
	if err := ValidateTable(nil); err != nil {
		t.Error(err)
	}
}

func TestReadTableDoesNotAlias(t *testing.T) {
	enc := AppendTable(nil, Table{"s": "abc", "x": []byte("def")})
	tab, _, err := ReadTable(enc)
	if err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		enc[i] = 0
	}
	if tab["s"] != "abc" || string(tab["x"].([]byte)) != "def" {
		t.Errorf("decoded values alias the input: %#v", tab)
	}
}

func TestAppendTableSmallDoesNotAllocate(t *testing.T) {
	tab := Table{"x-max-length": int64(10), "x-queue-type": "classic", "x-message-ttl": int32(1000)}
	buf := make([]byte, 0, 512)
	if allocs := testing.AllocsPerRun(100, func() { AppendTable(buf[:0], tab) }); allocs != 0 {
		t.Errorf("%v allocations", allocs)
	}
}
