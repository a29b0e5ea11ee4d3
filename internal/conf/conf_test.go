package conf

import (
	"testing"
	"time"
)

func TestDefaultFillsOnlyZero(t *testing.T) {
	for _, tc := range []struct{ in, want time.Duration }{{0, time.Second}, {time.Millisecond, time.Millisecond}, {-1, -1}} {
		v := tc.in
		Default(&v, time.Second)
		if v != tc.want {
			t.Errorf("Default(%v) = %v, want %v", tc.in, v, tc.want)
		}
	}
}

func TestNotNegative(t *testing.T) {
	if err := NotNegative("Rate", -1); err == nil || err.Error() != "Rate must not be negative, got -1" {
		t.Errorf("negative: %v", err)
	}
	for _, v := range []int{0, 1} {
		if err := NotNegative("Rate", v); err != nil {
			t.Errorf("%d: %v", v, err)
		}
	}
}
