// Package certname names the user of a SASL EXTERNAL login by its
// verified client certificate, in RabbitMQ's format. It is apart from
// tlsconf, which imports crypto/tls, so that the broker, which names users
// but serves TLS only through the connections it is given, links no TLS
// code, and so that its fuzz target runs in a small test binary.
package certname

import (
	"encoding/asn1"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"unicode/utf16"
	"unicode/utf8"
)

// rawATV is an AttributeTypeAndValue with its value undecoded, so that
// the string type (and a type Go does not decode) is seen.
type rawATV struct {
	Type  asn1.ObjectIdentifier
	Value asn1.RawValue
}

// rawRDNSET is a multi-valued RDN (the SET suffix makes encoding/asn1
// read a SET OF).
type rawRDNSET []rawATV

// maxSubject bounds the subject a DN is made of: a certificate has
// already been verified, but a CA may sign anything.
const maxSubject = 64 << 10

// SubjectDN formats a certificate's subject (its DER RDNSequence) as
// RabbitMQ's rabbit_cert_info:subject does, which is the user name an
// EXTERNAL login takes with ssl_cert_login_from distinguished_name: the
// RDNs last first, as RFC 4514 writes them ("CN=client,O=Example,C=GB"),
// joined by ","; the values of a multi-valued RDN joined by "+" in the
// order they are encoded; the attribute types RabbitMQ names by name (CN,
// O, OU, L, ST, C, DC, UID, SN, GIVENNAME, INITIALS, GENERATIONQUALIFIER,
// TITLE, SERIALNUMBER, PSEUDONYM, EMAILADDRESS) and others by their dotted
// OID; values escaped as RabbitMQ escapes them: a leading space or "#", a
// trailing space, and any of `"+,;<>\` get a backslash, and bytes outside
// 32 to 125 of the value's UTF-8 become \XX.
func SubjectDN(raw []byte) (string, error) {
	if len(raw) > maxSubject {
		return "", fmt.Errorf("subject of %d bytes", len(raw))
	}
	var seq []rawRDNSET
	rest, err := asn1.Unmarshal(raw, &seq)
	if err != nil {
		return "", err
	}
	if len(rest) > 0 {
		return "", fmt.Errorf("%d bytes after the subject", len(rest))
	}
	var b strings.Builder
	for i := len(seq) - 1; i >= 0; i-- {
		if i < len(seq)-1 {
			b.WriteByte(',')
		}
		for j, atv := range seq[i] {
			if j > 0 {
				b.WriteByte('+')
			}
			b.WriteString(attrName(atv.Type))
			b.WriteByte('=')
			escapeRDNValue(&b, attrValue(atv.Value))
		}
	}
	return b.String(), nil
}

// CommonNames lists the subject's CN values in the order encoded.
func CommonNames(raw []byte) ([]string, error) {
	if len(raw) > maxSubject {
		return nil, fmt.Errorf("subject of %d bytes", len(raw))
	}
	var seq []rawRDNSET
	if _, err := asn1.Unmarshal(raw, &seq); err != nil {
		return nil, err
	}
	var cns []string
	for _, rdn := range seq {
		for _, atv := range rdn {
			if atv.Type.Equal(oidCN) {
				cns = append(cns, attrValue(atv.Value))
			}
		}
	}
	return cns, nil
}

var oidCN = asn1.ObjectIdentifier{2, 5, 4, 3}

// attrNames are the types rabbit_cert_info:format_rdn names; it lists
// street-address too, but by an X.400 number that never matches, so
// 2.5.4.9 comes out dotted.
var attrNames = map[string]string{
	"2.5.4.4": "SN", "2.5.4.42": "GIVENNAME", "2.5.4.43": "INITIALS", "2.5.4.44": "GENERATIONQUALIFIER",
	"2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.12": "TITLE",
	"2.5.4.6": "C", "2.5.4.5": "SERIALNUMBER", "2.5.4.65": "PSEUDONYM", "0.9.2342.19200300.100.1.25": "DC",
	"1.2.840.113549.1.9.1": "EMAILADDRESS", "0.9.2342.19200300.100.1.1": "UID",
}

func attrName(oid asn1.ObjectIdentifier) string {
	s := oid.String()
	if n, ok := attrNames[s]; ok {
		return n
	}
	return s
}

// attrValue decodes a directory string to UTF-8 as RabbitMQ does
// (TeletexString as Latin-1, BMPString as UCS-2, UniversalString as
// UCS-4). A value of another type comes out as RFC 4514's "#" and the hex
// of its DER (RabbitMQ prints an Erlang term there).
func attrValue(v asn1.RawValue) string {
	if v.Class == asn1.ClassUniversal && !v.IsCompound {
		switch v.Tag {
		case asn1.TagUTF8String, asn1.TagPrintableString, asn1.TagIA5String, asn1.TagNumericString:
			return string(v.Bytes)
		case asn1.TagT61String:
			var b strings.Builder
			for _, c := range v.Bytes {
				b.WriteRune(rune(c))
			}
			return b.String()
		case asn1.TagBMPString:
			if len(v.Bytes)%2 == 0 {
				u := make([]uint16, len(v.Bytes)/2)
				for i := range u {
					u[i] = binary.BigEndian.Uint16(v.Bytes[2*i:])
				}
				return string(utf16.Decode(u))
			}
		case 28: // UniversalString
			if len(v.Bytes)%4 == 0 {
				var b strings.Builder
				for i := 0; i < len(v.Bytes); i += 4 {
					r := rune(binary.BigEndian.Uint32(v.Bytes[i:]))
					if !utf8.ValidRune(r) {
						r = utf8.RuneError
					}
					b.WriteRune(r)
				}
				return b.String()
			}
		}
	}
	return "#" + hex.EncodeToString(v.FullBytes)
}

// escapeRDNValue is rabbit_cert_info:escape_rdn_value, byte by byte of the
// UTF-8.
func escapeRDNValue(b *strings.Builder, v string) {
	for i := 0; i < len(v); i++ {
		c := v[i]
		switch {
		case i == 0 && (c == ' ' || c == '#'):
			b.WriteByte('\\')
			b.WriteByte(c)
		case i > 0 && i == len(v)-1 && c == ' ':
			b.WriteString(`\ `)
		case strings.IndexByte(`"+,;<>\`, c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 32 || c >= 126:
			fmt.Fprintf(b, `\%02X`, c)
		default:
			b.WriteByte(c)
		}
	}
}
