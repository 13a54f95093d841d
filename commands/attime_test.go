package commands

import (
	"testing"
	"time"
	_ "time/tzdata" // the DST cases need a zone with DST whatever the machine has
)

func TestAtClockTimeIsTheNextTimeTheClockShowsIt(t *testing.T) {
	t.Parallel()
	// A zone with DST stands for the local one: every time is built with
	// time.Date in it, as parseTime builds them.
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Fatal(err)
	}
	at := func(y int, m time.Month, d, h, mi, s int) time.Time { return time.Date(y, m, d, h, mi, s, 0, loc) }
	for _, tc := range []struct {
		name string
		now  time.Time
		in   string
		want time.Time
	}{
		{"a time still to come today is today", at(2026, 12, 6, 10, 28, 0), "10:29", at(2026, 12, 6, 10, 29, 0)},
		{"a time already past is tomorrow", at(2026, 12, 6, 10, 28, 0), "10:27", at(2026, 12, 7, 10, 27, 0)},
		{"exactly now is today, due at once", at(2026, 12, 6, 10, 27, 0), "10:27", at(2026, 12, 6, 10, 27, 0)},
		{"a minute is now until it has passed", at(2026, 12, 6, 10, 27, 59), "10:27", at(2026, 12, 6, 10, 27, 0)},
		{"with seconds, a second past is tomorrow", at(2026, 12, 6, 10, 27, 1), "10:27:00", at(2026, 12, 7, 10, 27, 0)},
		{"with seconds, the same second is today", at(2026, 12, 6, 10, 27, 0), "10:27:00", at(2026, 12, 6, 10, 27, 0)},
		{"midnight just before it is tomorrow's", at(2026, 12, 6, 23, 59, 30), "00:00", at(2026, 12, 7, 0, 0, 0)},
		{"midnight at midnight is today", at(2026, 12, 7, 0, 0, 0), "00:00", at(2026, 12, 7, 0, 0, 0)},
		{"the minute before midnight is still today", at(2026, 12, 6, 23, 59, 30), "23:59", at(2026, 12, 6, 23, 59, 0)},
		{"tomorrow crosses a year", at(2026, 12, 31, 23, 0, 0), "01:00", at(2027, 1, 1, 1, 0, 0)},
		// 24 hours after 08:00 EDT on the day before the change is 07:00
		// EST; the calendar day keeps 08:00.
		{"tomorrow across the end of DST keeps the clock time", at(2026, 10, 31, 9, 0, 0), "08:00", at(2026, 11, 1, 8, 0, 0)},
		{"tomorrow across the start of DST keeps the clock time", at(2026, 3, 7, 9, 0, 0), "08:00", at(2026, 3, 8, 8, 0, 0)},
		{"a full date is taken as given, even when past", at(2026, 12, 6, 10, 28, 0), "2026-12-06 10:27", at(2026, 12, 6, 10, 27, 0)},
		{"RFC 3339 is taken as given", at(2026, 12, 6, 10, 28, 0), "2026-12-06T10:27:00Z", time.Date(2026, 12, 6, 10, 27, 0, 0, time.UTC)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseTime(tc.in, tc.now)
			if err != nil || !got.Equal(tc.want) || got.Hour() != tc.want.Hour() {
				t.Fatalf("parseTime(%q) at %s = %s, %v; want %s", tc.in, tc.now, got, err, tc.want)
			}
			if clock := isClockTime(tc.in); clock != (len(tc.in) <= len("15:04:05")) {
				t.Fatalf("isClockTime(%q) = %v", tc.in, clock)
			}
		})
	}
}
