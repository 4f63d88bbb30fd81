//go:build race

package queue

// raceDetector is set under -race, which slows the property tests about
// tenfold (and finds nothing more in a core no goroutine shares).
const raceDetector = true
