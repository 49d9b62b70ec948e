//go:build !race

package hostile

const (
	raceEnabled = false
	memScale    = 1.0
)
