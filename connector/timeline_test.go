package connector

import (
	"errors"
	"regexp"
	"testing"
	"time"
)

// TestTimeline: Close's error names each step with its duration, and the
// one still running when it gave up.
func TestTimeline(t *testing.T) {
	tl := new(timeline)
	if got := tl.String(); got != "nothing to do" {
		t.Errorf("empty timeline: %q", got)
	}
	tl.step("proxy")
	time.Sleep(2 * time.Millisecond)
	tl.step("logout")
	tl.fail(errors.New("logging out: down"))
	tl.step("tsnet")
	if got, re := tl.String(), `^proxy [0-9.]+m?s, logout [0-9.]+m?s, tsnet [0-9.]+m?s \(still running\)$`; !regexp.MustCompile(re).MatchString(got) {
		t.Errorf("running: %q, want %s", got, re)
	}
	tl.step("")
	if got, re := tl.String(), `^proxy [0-9.]+m?s, logout [0-9.]+m?s, tsnet [0-9.]+m?s$`; !regexp.MustCompile(re).MatchString(got) {
		t.Errorf("done: %q, want %s", got, re)
	}
	if err := tl.err(); err == nil || err.Error() != "logging out: down" {
		t.Errorf("err() = %v", err)
	}
}
