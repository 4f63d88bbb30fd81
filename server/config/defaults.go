package config

import (
	"regexp"
	"strconv"
	"strings"
)

// checkDefaults checks what a first start creates (security.default*):
// a vhost name, tags a user may have, and patterns the broker can match
// (Go's RE2: one it could not compile would refuse everything).
func (l *Loader) checkDefaults(c *Config) error {
	s := c.Security
	if s.DefaultVHost == "" {
		return &Error{Source: l.Source("security.defaultvhost"), Key: "security.defaultvhost", Reason: "must not be empty",
			Value: `""`, Allowed: "a vhost name"}
	}
	for _, tag := range s.DefaultUserTagList() {
		if strings.ContainsAny(tag, " \t") {
			return &Error{Source: l.Source("security.defaultusertags"), Key: "security.defaultusertags", Reason: "a tag has a space in it",
				Value: strconv.Quote(s.DefaultUserTags), Allowed: "comma-separated tags such as administrator, monitoring, management, policymaker, impersonator"}
		}
	}
	for _, kp := range [][2]string{{"defaultpermissionsconfigure", s.DefaultPermissionsConfigure},
		{"defaultpermissionswrite", s.DefaultPermissionsWrite}, {"defaultpermissionsread", s.DefaultPermissionsRead}} {
		if _, err := regexp.Compile(kp[1]); err != nil {
			key, p := "security."+kp[0], kp[1]
			return &Error{Source: l.Source(key), Key: key, Reason: "not a regular expression: " + err.Error(), Value: strconv.Quote(p),
				Allowed: `a Go (RE2) regular expression, matched unanchored ("": nothing); PCRE's look-arounds and back-references are not supported`}
		}
	}
	return nil
}
