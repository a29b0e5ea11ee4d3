package punch

import (
	"context"
	"net"
	"testing"
	"time"
)

// TestConfigsZeroMeansDefault: zero fields take their defaults, set ones
// stay, negative ones are refused (the one rule of internal/conf).
func TestConfigsZeroMeansDefault(t *testing.T) {
	if got := (&Config{RetryDelay: time.Second}).withDefaults(); got.AttemptTimeout != 500*time.Millisecond || got.RetryDelay != time.Second ||
		got.HelloTimeout != 5*time.Second || got.MaxPending != 256 || got.Log == nil {
		t.Errorf("tcp config: %+v", got)
	}
	got, err := (&UDPConfig{Sockets: 8}).withDefaults()
	if err != nil || got.Sockets != 8 || got.Window != 32 || got.Interval != 50*time.Millisecond ||
		got.Budget.Rate() != DefaultSprayRate || got.MaxProbes != 2*DefaultSprayRate {
		t.Errorf("udp config: %+v, %v", got, err)
	}
	for _, err := range []error{(&Config{HelloTimeout: -1}).Verify(), (&UDPConfig{Rate: -1}).Verify()} {
		if err == nil {
			t.Error("a negative field passed Verify")
		}
	}
	if (*Config)(nil).Verify() != nil || (*UDPConfig)(nil).Verify() != nil {
		t.Error("nil (all defaults) failed Verify")
	}
}

// TestPunchUDPRefusesANegativeConfig: a negative rate is a mistake, not a
// request for the default.
func TestPunchUDPRefusesANegativeConfig(t *testing.T) {
	sock, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	peer := sock.LocalAddr().(*net.UDPAddr).AddrPort()
	_, err = PunchUDP(context.Background(), &UDPConfig{Rate: -5}, UDPSession{ID: NewSessionID(), Role: RoleDirect, PeerEndpoint: peer}, sock)
	if err == nil {
		t.Fatal("PunchUDP ran with a negative rate")
	}
	if _, err := sock.WriteToUDPAddrPort([]byte("x"), peer); err == nil {
		t.Error("PunchUDP did not close the socket it was given")
	}
}
