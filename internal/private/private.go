package private

import (
	"errors"
	"fmt"
	"strings"
)

// ErrExposed is what Check's error for a file others may access Is.
var ErrExposed = errors.New("others may read it")

// exposedErr says who may read a file and how to fix it; it Is ErrExposed
// without repeating its text.
type exposedErr struct{ msg string }

func (e *exposedErr) Error() string        { return e.msg }
func (e *exposedErr) Is(target error) bool { return target == ErrExposed }

// Well-known SIDs that may hold a private file on Windows besides its
// owner: the services' account and the machine's administrators, who can
// take any file anyway.
const (
	SIDSystem         = "S-1-5-18"
	SIDAdministrators = "S-1-5-32-544"
)

// ACE is one entry of a Windows DACL, as Exposure needs it.
type ACE struct {
	SID         string // "S-1-1-0" (Everyone), ...
	Allow       bool   // an access-allowed entry; deny entries take nothing away here
	InheritOnly bool   // applies to children only, never to the file itself
	Mask        uint32 // the access it grants
}

// Exposure returns the SIDs, other than owner, SYSTEM and Administrators,
// to which dacl grants any access to the file. A nil DACL grants everyone
// everything: it returns "S-1-1-0" (Everyone). Deny entries are ignored:
// the file is private only if nobody else is granted anything, whatever
// the order of entries.
func Exposure(owner string, dacl []ACE, nullDACL bool) []string {
	if nullDACL {
		return []string{"S-1-1-0"}
	}
	var out []string
	for _, e := range dacl {
		if !e.Allow || e.InheritOnly || e.Mask == 0 {
			continue
		}
		if e.SID == owner || e.SID == SIDSystem || e.SID == SIDAdministrators {
			continue
		}
		if !contains(out, e.SID) {
			out = append(out, e.SID)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// exposedError says who may read path and how to fix it on Windows.
func exposedError(path string, sids []string) error {
	return &exposedErr{fmt.Sprintf("its ACL grants access to %s besides its owner, SYSTEM and Administrators (run: icacls \"%s\" /inheritance:r /grant:r \"%%USERNAME%%:F\" SYSTEM:F Administrators:F)",
		strings.Join(sids, ", "), path)}
}
