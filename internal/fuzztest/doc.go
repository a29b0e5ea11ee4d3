// Package fuzztest holds the fake connections that the fuzz targets of
// several packages feed their decoders through. It is for tests only.
//
// It owns the fake connections only; the fuzz targets and their corpora
// stay beside the decoders they feed. Non-test code must not import it.
package fuzztest
