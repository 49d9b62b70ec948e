package parley

import "time"

// Time is a time as the API writes it: RFC 3339 in UTC with exactly six
// fractional digits. time.Time's own JSON drops trailing zeros (".12" or no
// fraction at all), and SPEC §1 promises milliseconds or finer.
type Time struct{ time.Time }

// TimeLayout is the wire format of Time.
const TimeLayout = "2006-01-02T15:04:05.000000Z07:00"

// T wraps t, in UTC and truncated to microseconds, the precision the stores keep.
func T(t time.Time) Time { return Time{t.UTC().Truncate(time.Microsecond)} }

// TP is T for an optional time.
func TP(t time.Time) *Time { v := T(t); return &v }

// MarshalJSON implements json.Marshaler.
func (t Time) MarshalJSON() ([]byte, error) {
	b := make([]byte, 0, len(TimeLayout)+2)
	b = append(b, '"')
	b = t.UTC().AppendFormat(b, TimeLayout)
	return append(b, '"'), nil
}

// UnmarshalJSON implements json.Unmarshaler; it accepts any RFC 3339 time.
func (t *Time) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	return t.Time.UnmarshalJSON(b)
}
