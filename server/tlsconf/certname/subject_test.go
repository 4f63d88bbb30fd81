package certname_test

import (
	"bytes"
	"encoding/asn1"
	"testing"

	"github.com/amqp-go/amqp-go/server/tlsconf/certname"
	"github.com/amqp-go/amqp-go/server/tlsconf/tlstest"
)

func TestSubjectDN(t *testing.T) {
	for _, tc := range tlstest.DNCases {
		raw, err := asn1.Marshal(tc.Subject)
		if err != nil {
			t.Fatal(err)
		}
		if got, err := certname.SubjectDN(raw); err != nil || got != tc.DN {
			t.Errorf("%s: %q, %v; want %q", tc.Name, got, err, tc.DN)
		}
	}
	for _, bad := range [][]byte{nil, {0x30}, {0x30, 0x03, 0x31, 0x01}, bytes.Repeat([]byte{0x30}, 70000)} {
		if dn, err := certname.SubjectDN(bad); err == nil {
			t.Errorf("% x: %q, want an error", bad[:min(len(bad), 8)], dn)
		}
	}
}

// FuzzSubjectDN: any bytes give a DN or an error, never a panic.
func FuzzSubjectDN(f *testing.F) {
	for _, tc := range tlstest.DNCases {
		raw, _ := asn1.Marshal(tc.Subject)
		f.Add(raw)
	}
	f.Fuzz(func(t *testing.T, raw []byte) { _, _ = certname.SubjectDN(raw) })
}
