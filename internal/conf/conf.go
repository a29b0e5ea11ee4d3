// Package conf is the one rule warren's component configs follow for
// what counts as unset: the zero value of a field means its default, and
// a negative number is an error, which the config's Verify reports
// (constructors that can fail call it). Each package writes its defaults
// once, in its DefaultConfig or its Default constants, and fills them in
// with Default.
package conf

import "fmt"

// Number is a numeric config field: a count, a rate, a size or a
// time.Duration.
type Number interface {
	~int | ~int32 | ~int64 | ~uint16 | ~uint32 | ~float64
}

// Default sets *v to def if *v is unset (zero).
func Default[T Number](v *T, def T) {
	if *v == 0 {
		*v = def
	}
}

// NotNegative returns an error naming field if v is negative.
func NotNegative[T Number](field string, v T) error {
	if v < 0 {
		return fmt.Errorf("%s must not be negative, got %v", field, v)
	}
	return nil
}
