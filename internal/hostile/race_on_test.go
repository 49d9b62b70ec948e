//go:build race

package hostile

const (
	raceEnabled = true
	// memScale widens memory bounds under the race detector, whose shadow
	// memory grows with every allocation (measured: about twice the growth).
	memScale = 2.5
)
