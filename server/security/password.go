// Package security holds who may use the broker and for what: users and
// their password hashes, virtual hosts, permissions, topic permissions and
// limits, as RabbitMQ 3.10 defines them. It knows nothing of connections or
// queues; the broker asks it questions and caches the answers.
package security

import (
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"encoding/base64"
	"fmt"
	"hash"
)

// The hashing algorithms of RabbitMQ's password_hashing_module, by the
// names its definitions carry.
const (
	HashSHA256 = "rabbit_password_hashing_sha256"
	HashSHA512 = "rabbit_password_hashing_sha512"
	HashMD5    = "rabbit_password_hashing_md5"
)

// saltLen is RabbitMQ's salt: a random 32-bit integer.
const saltLen = 4

func newHash(alg string) (hash.Hash, error) {
	switch alg {
	case HashSHA256, "":
		return sha256.New(), nil
	case HashSHA512:
		return sha512.New(), nil
	case HashMD5:
		return md5.New(), nil
	}
	return nil, fmt.Errorf("unknown hashing algorithm '%s' (allowed: %s, %s, %s)", alg, HashSHA256, HashSHA512, HashMD5)
}

// HashPassword hashes password as RabbitMQ does: a random 4-byte salt, the
// digest of salt ‖ password, salt ‖ digest in standard base64. alg ""
// means HashSHA256, RabbitMQ's default.
func HashPassword(alg, password string) (string, error) {
	var salt [saltLen]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return "", err
	}
	return hashWithSalt(alg, salt[:], password)
}

func hashWithSalt(alg string, salt []byte, password string) (string, error) {
	h, err := newHash(alg)
	if err != nil {
		return "", err
	}
	h.Write(salt)
	h.Write([]byte(password))
	return base64.StdEncoding.EncodeToString(h.Sum(append([]byte(nil), salt...))), nil
}

// CheckHash validates a stored hash's form for alg: base64 of a salt and
// a digest of the algorithm's size. "" (no password) is valid.
func CheckHash(alg, passwordHash string) error {
	if passwordHash == "" {
		return nil
	}
	h, err := newHash(alg)
	if err != nil {
		return err
	}
	raw, err := base64.StdEncoding.DecodeString(passwordHash)
	if err != nil {
		return fmt.Errorf("password_hash is not base64: %v", err)
	}
	if len(raw) != saltLen+h.Size() {
		return fmt.Errorf("password_hash holds %d bytes, %s needs %d", len(raw), alg, saltLen+h.Size())
	}
	return nil
}

// passwordMatches reports whether password hashes to passwordHash under
// alg, comparing the digests in constant time. An empty hash matches no
// password (such a user logs in only by EXTERNAL).
func passwordMatches(alg, passwordHash, password string) bool {
	if passwordHash == "" {
		return false
	}
	raw, err := base64.StdEncoding.DecodeString(passwordHash)
	if err != nil || len(raw) < saltLen {
		return false
	}
	h, err := newHash(alg)
	if err != nil {
		return false
	}
	h.Write(raw[:saltLen])
	h.Write([]byte(password))
	return subtle.ConstantTimeCompare(h.Sum(nil), raw[saltLen:]) == 1
}
