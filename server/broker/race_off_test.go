//go:build !race

package broker_test

// raceDetector is set under -race, which inflates memory several times.
const raceDetector = false
