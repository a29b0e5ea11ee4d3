package private

import (
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
)

const (
	owner    = "S-1-5-21-1-2-3-1001"
	everyone = "S-1-1-0"
	users    = "S-1-5-32-545"
	authUser = "S-1-5-11"
	creator  = "S-1-3-0"
)

func TestExposure(t *testing.T) {
	for _, tc := range []struct {
		name string
		dacl []ACE
		null bool
		want []string
	}{
		{"owner only", []ACE{{SID: owner, Allow: true, Mask: 0x1f01ff}}, false, nil},
		{"owner, SYSTEM, Administrators (icacls /inheritance:r)", []ACE{
			{SID: owner, Allow: true, Mask: 0x1f01ff},
			{SID: SIDSystem, Allow: true, Mask: 0x1f01ff},
			{SID: SIDAdministrators, Allow: true, Mask: 0x1f01ff},
		}, false, nil},
		{"inherited Users read (a file under C:\\warren)", []ACE{
			{SID: owner, Allow: true, Mask: 0x1f01ff},
			{SID: users, Allow: true, Mask: 0x1200a9},
			{SID: authUser, Allow: true, Mask: 0x1301bf},
		}, false, []string{users, authUser}},
		{"Everyone read", []ACE{{SID: everyone, Allow: true, Mask: 0x120089}}, false, []string{everyone}},
		{"a deny entry does not make it private", []ACE{
			{SID: everyone, Allow: false, Mask: 0x1f01ff},
			{SID: everyone, Allow: true, Mask: 0x120089},
		}, false, []string{everyone}},
		{"inherit-only entries do not apply to the file", []ACE{
			{SID: owner, Allow: true, Mask: 0x1f01ff},
			{SID: creator, Allow: true, InheritOnly: true, Mask: 0x1f01ff},
		}, false, nil},
		{"empty mask grants nothing", []ACE{{SID: users, Allow: true}}, false, nil},
		{"no DACL at all: everyone", nil, true, []string{everyone}},
		{"empty DACL: nobody", nil, false, nil},
	} {
		if got := Exposure(owner, tc.dacl, tc.null); !slices.Equal(got, tc.want) {
			t.Errorf("%s: exposed to %v, want %v", tc.name, got, tc.want)
		}
	}
	err := exposedError(`C:\warren\warren.key`, []string{users})
	if !errors.Is(err, ErrExposed) || !strings.Contains(err.Error(), users) || !strings.Contains(err.Error(), `icacls "C:\warren\warren.key"`) {
		t.Errorf("Windows error %q: want the SID, the icacls command and ErrExposed", err)
	}
}

func TestCheckMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("modes mean nothing on Windows; TestExposure covers its ACLs")
	}
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(path); err != nil {
		t.Fatalf("0600: %v", err)
	}
	for _, mode := range []os.FileMode{0o640, 0o604, 0o644, 0o660} {
		os.Chmod(path, mode)
		err := Check(path)
		if !errors.Is(err, ErrExposed) || !strings.Contains(err.Error(), "chmod 600 "+path) {
			t.Errorf("mode %04o: %v, want ErrExposed and the chmod to run", mode, err)
		}
	}
}

func TestRestrict(t *testing.T) {
	path := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	os.Chmod(path, 0o644)
	if runtime.GOOS != "windows" && Check(path) == nil {
		t.Fatal("0644 passed Check")
	}
	if err := Restrict(path); err != nil {
		t.Fatal(err)
	}
	if err := Check(path); err != nil {
		t.Fatalf("after Restrict: %v", err)
	}
}
