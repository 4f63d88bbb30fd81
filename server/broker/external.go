package broker

import (
	"fmt"
	"strings"

	"github.com/amqp-go/amqp-go/server/tlsconf/certname"
)

// The SASL EXTERNAL mechanism over TLS, as RabbitMQ's
// rabbitmq_auth_mechanism_ssl has it: the user is named by the verified
// client certificate (its subject DN, or its common name), and no
// password is checked.

// CertLoginFrom values: where EXTERNAL takes the user name from
// (RabbitMQ's ssl_cert_login_from).
const (
	CertLoginDN = "distinguished_name"
	CertLoginCN = "common_name"
)

// externalLogin is EXTERNAL's answer for the verified client certificate
// whose DER subject is subject: the user name, or why the
// login is refused in RabbitMQ's words (logged, never sent: the client is
// told only that the login was refused).
func (s *Server) externalLogin(subject []byte) (user, why string) {
	if s.cfg.CertLoginFrom == CertLoginCN {
		cns, err := certname.CommonNames(subject)
		if err != nil {
			return "", "no name found"
		}
		if len(cns) == 0 {
			return "", "no name found"
		}
		// Several CNs are joined with "," as RabbitMQ does, unescaped.
		user = strings.Join(cns, ",")
	} else {
		dn, err := certname.SubjectDN(subject)
		if err != nil {
			return "", "no name found"
		}
		user = dn
	}
	if !s.mayLoginExternal(user) {
		return user, fmt.Sprintf("user '%s' - invalid credentials", user)
	}
	return user, ""
}

// mayLoginExternal reports whether user exists and may log in by EXTERNAL,
// which checks no password (a user with or without one may), as
// RabbitMQ's internal backend answers check_user_login(Name, []).
func (s *Server) mayLoginExternal(user string) bool {
	_, ok := s.lookupUser(user)
	return ok
}
