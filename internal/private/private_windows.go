//go:build windows

package private

import (
	"fmt"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Check returns nil if path's ACL grants access to nobody but its owner,
// SYSTEM and Administrators (see Exposure), and else an error wrapping
// ErrExposed that names who else may and the icacls command that fixes it.
func Check(path string) error {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.OWNER_SECURITY_INFORMATION|windows.DACL_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("read ACL: %w", err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return fmt.Errorf("read owner: %w", err)
	}
	dacl, _, err := sd.DACL()
	if err != nil {
		return fmt.Errorf("read DACL: %w", err)
	}
	var aces []ACE
	if dacl != nil {
		for i := range uint32(dacl.AceCount) {
			var ace *windows.ACCESS_ALLOWED_ACE
			if err := windows.GetAce(dacl, i, &ace); err != nil {
				return fmt.Errorf("read ACL entry %d: %w", i, err)
			}
			// Allowed and denied entries share this layout; other entry
			// types (objects, callbacks) count as allowed, to be safe.
			sid := (*windows.SID)(unsafe.Pointer(&ace.SidStart))
			aces = append(aces, ACE{
				SID:         sid.String(),
				Allow:       ace.Header.AceType != windows.ACCESS_DENIED_ACE_TYPE,
				InheritOnly: ace.Header.AceFlags&windows.INHERIT_ONLY_ACE != 0,
				Mask:        uint32(ace.Mask),
			})
		}
	}
	if sids := Exposure(owner.String(), aces, dacl == nil); len(sids) > 0 {
		return exposedError(path, sids)
	}
	return nil
}

// Restrict makes path private: its DACL becomes one that grants full
// control to its owner, SYSTEM and Administrators, and inherits nothing
// from its directory (C:\warren, say, lets Users read). Files warren
// creates itself (a new key) must pass Check at the next start.
func Restrict(path string) error {
	sd, err := windows.GetNamedSecurityInfo(path, windows.SE_FILE_OBJECT, windows.OWNER_SECURITY_INFORMATION)
	if err != nil {
		return fmt.Errorf("read owner: %w", err)
	}
	owner, _, err := sd.Owner()
	if err != nil {
		return fmt.Errorf("read owner: %w", err)
	}
	sids := []*windows.SID{owner}
	for _, known := range []windows.WELL_KNOWN_SID_TYPE{windows.WinLocalSystemSid, windows.WinBuiltinAdministratorsSid} {
		sid, err := windows.CreateWellKnownSid(known)
		if err != nil {
			return fmt.Errorf("well-known SID %d: %w", known, err)
		}
		sids = append(sids, sid)
	}
	entries := make([]windows.EXPLICIT_ACCESS, len(sids))
	for i, sid := range sids {
		entries[i] = windows.EXPLICIT_ACCESS{
			AccessPermissions: windows.GENERIC_ALL,
			AccessMode:        windows.GRANT_ACCESS,
			Inheritance:       windows.NO_INHERITANCE,
			Trustee: windows.TRUSTEE{
				TrusteeForm:  windows.TRUSTEE_IS_SID,
				TrusteeType:  windows.TRUSTEE_IS_UNKNOWN,
				TrusteeValue: windows.TrusteeValueFromSID(sid),
			},
		}
	}
	acl, err := windows.ACLFromEntries(entries, nil)
	if err != nil {
		return fmt.Errorf("build ACL: %w", err)
	}
	err = windows.SetNamedSecurityInfo(path, windows.SE_FILE_OBJECT,
		windows.DACL_SECURITY_INFORMATION|windows.PROTECTED_DACL_SECURITY_INFORMATION, nil, nil, acl, nil)
	if err != nil {
		return fmt.Errorf("set ACL: %w", err)
	}
	return nil
}
