// Package fuzzconn holds FuzzConn, the fuzz target that feeds whole
// connections to the broker. It is a package of its own, with no other
// tests, because `go test -fuzz` instruments every package linked into the
// test binary and the fuzzing engine's cost per execution grows with the
// number of coverage counters: the broker's own test binary links Badger
// and the dependencies of its other tests, twice the counters of this one.
package fuzzconn
