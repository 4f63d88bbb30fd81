package tlstest

import (
	"crypto/x509/pkix"
	"encoding/asn1"
)

// ATV is one attribute of an RDN.
func ATV(oid asn1.ObjectIdentifier, v any) pkix.AttributeTypeAndValue {
	return pkix.AttributeTypeAndValue{Type: oid, Value: v}
}

// Str is a string attribute value of an explicit ASN.1 string type.
func Str(tag int, b []byte) asn1.RawValue { return asn1.RawValue{Tag: tag, Bytes: b} }

// Attribute types of the cases.
var (
	OIDCN     = asn1.ObjectIdentifier{2, 5, 4, 3}
	OIDO      = asn1.ObjectIdentifier{2, 5, 4, 10}
	OIDOU     = asn1.ObjectIdentifier{2, 5, 4, 11}
	OIDC      = asn1.ObjectIdentifier{2, 5, 4, 6}
	OIDL      = asn1.ObjectIdentifier{2, 5, 4, 7}
	OIDStreet = asn1.ObjectIdentifier{2, 5, 4, 9}
	OIDDC     = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 25}
	OIDUID    = asn1.ObjectIdentifier{0, 9, 2342, 19200300, 100, 1, 1}
	OIDEmail  = asn1.ObjectIdentifier{1, 2, 840, 113549, 1, 9, 1}
)

// DNCase is a subject and the user name RabbitMQ 3.10.8 derives from it
// (rabbit_cert_info:subject).
type DNCase struct {
	Name    string
	Subject pkix.RDNSequence
	DN      string
}

// DNCases are checked against RabbitMQ by the broker's
// TestExternalDNRabbitMQ and against certname.SubjectDN by its tests.
var DNCases = []DNCase{
	{"plain", pkix.RDNSequence{{ATV(OIDC, "GB")}, {ATV(OIDO, "Example")}, {ATV(OIDCN, "client")}},
		"CN=client,O=Example,C=GB"},
	{"escapes", pkix.RDNSequence{{ATV(OIDO, `a,b+c;d<e>f"g\h=i`)}, {ATV(OIDCN, "#lead and trail ")}},
		`CN=\#lead and trail\ ,O=a\,b\+c\;d\<e\>f\"g\\h=i`},
	{"leading space and tilde", pkix.RDNSequence{{ATV(OIDCN, " x~y")}}, `CN=\ x\7Ey`},
	{"non-ASCII", pkix.RDNSequence{{ATV(OIDCN, "Zoë λ")}}, `CN=Zo\C3\AB \CE\BB`},
	{"multi-valued", pkix.RDNSequence{{ATV(OIDO, "Org")}, {ATV(OIDOU, "unit"), ATV(OIDCN, "both")}},
		"CN=both+OU=unit,O=Org"},
	{"named and dotted types", pkix.RDNSequence{{ATV(OIDDC, Str(asn1.TagIA5String, []byte("example")))}, {ATV(OIDL, "Town")},
		{ATV(OIDStreet, "1 Main St")}, {ATV(OIDEmail, Str(asn1.TagIA5String, []byte("a@example.com")))}, {ATV(OIDUID, "u1")}},
		"UID=u1,EMAILADDRESS=a@example.com,2.5.4.9=1 Main St,L=Town,DC=example"},
	{"string types", pkix.RDNSequence{{ATV(OIDO, Str(asn1.TagT61String, []byte{'c', 0xe9}))}, {ATV(OIDCN, Str(asn1.TagBMPString, []byte{0, 'b', 0x03, 0xbb}))}},
		`CN=b\CE\BB,O=c\C3\A9`},
}
